"""
What a run needs before it allocates anything: memory (a run that cannot fit is refused with the estimate, so a typo
in block_size or n_embd does not take all memory) and disk (what its checkpoints keep: train.py --dry_run).
"""
import torch

from configurator import ConfigError
from engramlib.system import available_ram


def check_memory(c, m, model, device_type, device):
    """The parameter count of `model` (built on the meta device from model config m), after refusing a run config c
    that cannot fit: fp32 weights, grads and two AdamW moments (16 B per parameter) plus, on CPU, the activations of
    a micro-batch (roughly). On CUDA the activations are the micro-batch fallback's job. Host tables (weights and
    two moments, 12 B per parameter) count as host memory."""
    n = sum(p.numel() for p in model.parameters())
    on_host = model.memory.table.weight.numel() if c['engram_tables'] == 'host' else 0
    host, state = 12 * on_host, 16 * (n - on_host)
    act = c['batch_size'] * c['block_size'] * (m.n_layer * m.n_embd * 34 + m.vocab_size * 8)
    if host and host > available_ram():
        raise ConfigError(f"the host tables need about {host / 2**30:,.1f} GiB of host memory (weights and AdamW "
                          f"moments) but {available_ram() / 2**30:,.1f} GiB are available. Lower --table_size.")
    if device_type == 'cuda':
        need, have = state, torch.cuda.get_device_properties(device).total_memory
    else:
        need, have = state + act + host, available_ram()
    if need > have:
        raise ConfigError(f"this run needs about {need / 2**30:,.1f} GiB ({n:,} parameters: {state / 2**30:,.1f} GiB of "
                          f"weights, grads and AdamW moments" + ('' if device_type == 'cuda' else
                          f"; {act / 2**30:,.1f} GiB of activations per micro-batch") +
                          (f"; host tables {host / 2**30:,.1f} GiB" if host else '') + f") but {device} has "
                          f"{have / 2**30:,.1f} GiB. Lower --batch_size (raise --gradient_accumulation_steps to keep the "
                          f"global batch), --block_size or the model size.")
    return n


def footprint(c, n_params):
    """What the run keeps on disk (bytes): ckpt.pt (fp32 weights; + two AdamW moments unless final_ckpt='weights'),
    best.pt and the snapshots when asked, and the temp file of a write in progress (a full checkpoint)."""
    weights = 4 * n_params
    full = 3 * weights
    snapshots = (c['max_iters'] // c['eval_interval'] + 2) * weights if c['save_snapshots'] else 0
    keeps = (weights if c['final_ckpt'] == 'weights' else full) + (weights if c['save_best'] else 0) + snapshots
    return {'params': n_params, 'ckpt_bytes': full, 'keeps_bytes': keeps, 'temp_bytes': full}
