"""
What a run needs before it allocates anything: memory (a run that cannot fit is refused with the estimate, so a typo
in block_size or n_embd does not take all memory) and disk (what its checkpoints keep: train.py --dry_run).
"""
import torch

from configurator import ConfigError
from engramlib.system import available_ram


# Fitted on cpu2 (2026-12-07, LOG.md): the peak RSS of 11 float32 CPU runs, 5M-211M parameters, 64-8,192 tokens a
# forward.
BASE_BYTES = 370e6              # python, torch, numpy and the n-gram index, before the model
TRAIN_PER_TOKEN = (12.4, 38)    # a training micro-batch: bytes per token per vocab id (logits and their gradient,
                                # float32, plain head) and per layer x n_embd (the blocks' saved activations)
EVAL_PER_TOKEN = 8.0            # an eval forward: bytes per token per vocab id (logits and log-softmax)

def memory_need(c, m, n):
    """Peak host memory of a CPU run (bytes): the largest of its phases. A step holds the weights, grads and two
    AdamW moments (16 B a parameter) and one micro-batch's activations; an eval, weights and moments and an eval
    batch's logits; a save, weights and moments, the checkpoint writer's copy of them (kept from one save to the
    next: 12 B) and the written file read back to verify it (12 B more). Within 10% of the 11 float32 runs it was
    fitted on; of two runs it was not, 18% above a host-tables run's peak and 13% below a bf16-autocast run's."""
    per_vocab, per_layer = TRAIN_PER_TOKEN
    tokens = c['batch_size'] * c['block_size']
    step = 28 * n + tokens * (per_vocab * m.vocab_size + per_layer * m.n_layer * m.n_embd)
    evals = 24 * n + c['eval_batch_size'] * c['block_size'] * EVAL_PER_TOKEN * m.vocab_size
    return BASE_BYTES + max(step, evals, 36 * n)

def check_memory(c, m, model, device_type, device):
    """(parameters of `model`, host memory the run needs in bytes), `model` built on the meta device from model
    config m, after refusing a run config c that cannot fit: on CPU the calibrated peak (memory_need); on CUDA fp32
    weights, grads and two AdamW moments (16 B per parameter) on the device (activations are the micro-batch
    fallback's job) and, in host memory, the checkpoint writer's copy and its read-back (24 B per parameter) plus the
    host tables (weights and two moments, 12 B per parameter)."""
    n = sum(p.numel() for p in model.parameters())
    on_host = model.memory.table.weight.numel() if c['engram_tables'] == 'host' else 0
    cuda = device_type == 'cuda'
    host = BASE_BYTES + 24 * n + 12 * on_host if cuda else memory_need(c, m, n)
    free = available_ram()
    if host > free:
        what = 'checkpoint copies and host tables' if cuda else 'weights, grads, moments, activations, checkpoint copies'
        tables = f", {on_host:,} of them in the host tables" if on_host else ''
        raise ConfigError(f"this run needs about {host / 2**30:,.1f} GiB of host memory ({n:,} parameters{tables}; "
                          f"{what}) but {free / 2**30:,.1f} GiB are available. Lower --batch_size (raise "
                          f"--gradient_accumulation_steps to keep the global batch), --eval_batch_size, --block_size, "
                          f"--table_size or the model size.")
    need = 16 * (n - on_host)
    have = torch.cuda.get_device_properties(device).total_memory if cuda else 0
    if cuda and need > have:
        raise ConfigError(f"this run needs about {need / 2**30:,.1f} GiB of GPU memory ({n:,} parameters: weights, grads "
                          f"and AdamW moments) but {device} has {have / 2**30:,.1f} GiB. Lower --table_size or the "
                          f"model size, or keep the tables in host memory (--engram_tables='host').")
    return n, host


def footprint(c, n_params):
    """What the run keeps on disk (bytes): ckpt.pt (fp32 weights; + two AdamW moments unless final_ckpt='weights'),
    best.pt and the snapshots when asked, and the temp file of a write in progress (a full checkpoint)."""
    weights = 4 * n_params
    full = 3 * weights
    snapshots = (c['max_iters'] // c['eval_interval'] + 2) * weights if c['save_snapshots'] else 0
    keeps = (weights if c['final_ckpt'] == 'weights' else full) + (weights if c['save_best'] else 0) + snapshots
    return {'params': n_params, 'ckpt_bytes': full, 'keeps_bytes': keeps, 'temp_bytes': full}
