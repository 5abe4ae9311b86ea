"""
Train GPT-2 with Engram memory (nanoGPT style).

  python train.py configs/nine_100_400k.py --seed=1
  torchrun --standalone --nproc_per_node=8 train.py configs/hash_500k.py

Defaults are the paper's (Table 1, Nine-100/400K). Every eval appends the route-stratified metrics to
out_dir/metrics.jsonl (and wandb), so the flip analysis never depends on kept checkpoints.
"""
import json
import math
import os
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from checkpoint import CKPT_VERSION, attach_gate_data, build_index, check_signature, data_signature, load_checkpoint, load_weights
from configurator import ConfigError, apply_config
from data import DataError, TokenData, atomic_write, save_json, save_torch, to_device
from mdmix import Noise
from metrics import evaluate
from model import GPT, GPTConfig, device_peak_flops

# -----------------------------------------------------------------------------
# config: paper defaults (Table 1/2); override with a config file and --key=value
# I/O
out_dir = 'out/nine_100_400k'
data_dir = 'data/fineweb_edu'
eval_interval = 250
log_interval = 10
eval_iters = 100              # the fixed validation set = eval_iters * batch_size windows
eval_only = False
always_save_checkpoint = True
save_snapshots = False        # weights-only snapshot at every eval (for key-stability analyses)
init_from = 'scratch'         # 'scratch' | 'resume'
# wandb
wandb_log = False
wandb_project = 'engram-nine'
wandb_group = ''
wandb_run_name = ''
# data
gradient_accumulation_steps = 4   # global micro-steps per iter, split across DDP ranks
batch_size = 4
block_size = 1024
seed = 0
# model
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = True
memory = 'nine'               # 'none' | 'hash' | 'nine'
engram_layers = (2, 4, 6)
ngram_orders = (2, 3)
engram_heads = 2
engram_head_dim = 64
table_size = 400_000
hot_size = 100_000
engram_shared_tables = True
engram_hash = 'mulxor'
engram_hash_seed = 0
engram_gate = 'sigmoid'
engram_short_conv = False
label_smoothing = 0.0
# the paper's open questions (§6.3, §7.2; configs/study/): all off by default = the paper's model
hot_index = 'mphf'            # 'hashed': membership-only Nine (hot rows indexed by hashing, with collisions)
hot_collision = 1             # controlled collisions: N_hot hot keys into ceil(N_hot / c) rows
gate_keys = 'shared'          # 'decoupled': W_K^hot and W_K^cold
gate_inputs = ()              # any of 'is_hot', 'log_freq', 'collision'
hot_layers = ()               # Engram layers that read the hot tier; () = all
hot_dropout = 0.0             # dropout of whole hot rows
hot_weight_decay = 0.0        # extra decoupled weight decay on hot rows (per step: w -= lr * this * w)
wk_decay = 0.0                # W_K forgetting: w_k *= 1 - wk_decay after every step
wk_reset_interval = 0         # re-initialize W_K every this many iters (0 = never)
# MD-mix deterministic noise (mdmix.py); every sigma 0 = off, bit-identical to no noise
noise_emb = 0.0
noise_qk = 0.0
noise_logits = 0.0
noise_mem = 0.0
noise_mem_scope = 'all'       # 'all' | 'hot' | 'cold' rows of Engram memory
noise_kind = 'gaussian'       # 'gaussian' | 'rademacher'
noise_schedule = 'constant'   # 'constant' | 'cosine_tail' (cosine to zero over the last noise_tail_frac)
noise_tail_frac = 0.2
noise_seed = 0
# AdamW
learning_rate = 6e-4
max_iters = 5000
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0
table_optimizer = 'adamw'     # 'adamw' (paper: dense, every row every step) | 'rowwise' (lazy, only rows read)
decay_lr = True
warmup_iters = 100
lr_decay_iters = 5000
min_lr = 6e-5
# system
backend = 'nccl'              # DDP backend on CUDA; CPU always uses gloo
device = 'cuda' if torch.cuda.is_available() else 'cpu'
dtype = 'bfloat16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'float32'
compile = True                # torch.compile on CUDA only
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool, str, tuple))]

def get_lr(it, cfg):
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters (nanoGPT)."""
    if not cfg['decay_lr']:
        return cfg['learning_rate']
    if it < cfg['warmup_iters']:
        return cfg['learning_rate'] * (it + 1) / (cfg['warmup_iters'] + 1)
    if it > cfg['lr_decay_iters']:
        return cfg['min_lr']
    ratio = (it - cfg['warmup_iters']) / (cfg['lr_decay_iters'] - cfg['warmup_iters'])
    return cfg['min_lr'] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg['learning_rate'] - cfg['min_lr'])

def model_config(cfg, vocab_size):
    keys = GPTConfig.__dataclass_fields__
    args = {k: cfg[k] for k in keys if k in cfg}
    args['vocab_size'] = vocab_size
    return GPTConfig(**args)

def keep_on_resume(row, ckpt_iter):
    """The checkpoint of iter k is saved after eval k and before train step k: rows logged later
    (a crash between a log and the next save) are redone by the resumed run."""
    return row['iter'] <= ckpt_iter if row['kind'] == 'eval' else row['iter'] < ckpt_iter

def truncate_metrics(path, ckpt_iter):
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [l for l in f if l.strip() and keep_on_resume(json.loads(l), ckpt_iter)]
    atomic_write(path, lambda f: f.writelines(rows), mode='w')

def main(argv):
    cfg = {k: globals()[k] for k in config_keys}
    apply_config(cfg, argv, config_keys)

    ddp = int(os.environ.get('RANK', -1)) != -1
    dev = cfg['device']
    if ddp:
        dist.init_process_group(backend=cfg['backend'] if dev.startswith('cuda') else 'gloo')
        rank, world = dist.get_rank(), dist.get_world_size()
        if dev.startswith('cuda'):
            dev = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(dev)
    else:
        rank, world = 0, 1
    master = rank == 0
    G = cfg['gradient_accumulation_steps']
    if G % world:
        raise DataError(f"gradient_accumulation_steps {G} must be divisible by the {world} DDP processes")
    local_G = G // world
    device_type = 'cuda' if dev.startswith('cuda') else 'cpu'
    ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[cfg['dtype']]
    autocast = nullcontext() if device_type == 'cpu' else torch.autocast(device_type, dtype=ptdtype)
    if device_type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg['seed'])

    # data and the n-gram index (hot tier of hot_size: Nine's routes, every model's is_hot labels)
    orders = tuple(cfg['ngram_orders'])
    data = TokenData(cfg['data_dir'], max(orders) - 1)
    data.check_block_size(cfg['block_size'])
    meta = data.meta
    vocab = meta['tokens']['vocab_size']
    index, hot_sha = build_index(cfg['data_dir'], meta, orders, cfg['hot_size'])
    signature = data_signature(meta, hot_sha)
    val_starts = data.val_starts(cfg['block_size'], cfg['eval_iters'] * cfg['batch_size'])

    ckpt_path = os.path.join(cfg['out_dir'], 'ckpt.pt')
    metrics_path = os.path.join(cfg['out_dir'], 'metrics.jsonl')
    iter_num, best_val_loss, wandb_id, ckpt = 0, 1e9, None, None
    if cfg['init_from'] == 'resume':
        ckpt = load_checkpoint(ckpt_path)
        check_signature(ckpt['data_signature'], signature, f"checkpoint {ckpt_path}")
        iter_num, best_val_loss, wandb_id = ckpt['iter_num'], ckpt['best_val_loss'], ckpt.get('wandb_id')
    elif cfg['init_from'] != 'scratch':
        raise DataError(f"init_from must be 'scratch' or 'resume', got {cfg['init_from']!r}")

    mcfg = model_config(cfg, -(-vocab // 64) * 64)
    try:
        noise = None
        if any(cfg[k] > 0 for k in ('noise_emb', 'noise_qk', 'noise_logits', 'noise_mem')):
            noise = Noise.from_config(cfg)
        model = GPT(mcfg, index=index, noise=noise)
    except AssertionError as e:
        raise DataError(f"bad model config: {e}") from None
    attach_gate_data(model, cfg['data_dir'])
    if ckpt is not None:
        load_weights(model, ckpt['model'], f"checkpoint {ckpt_path}")
    model.to(dev)
    optimizer = model.configure_optimizers(cfg['weight_decay'], cfg['learning_rate'], (cfg['beta1'], cfg['beta2']), device_type,
                                           cfg['table_optimizer'])
    if ckpt is not None:
        optimizer.load_state_dict(ckpt['optimizer'])
        torch.set_rng_state(ckpt['rng']['torch'])
        if device_type == 'cuda' and ckpt['rng'].get('cuda') is not None:
            torch.cuda.set_rng_state(ckpt['rng']['cuda'])
    raw_model = model
    if cfg['compile'] and device_type == 'cuda':
        model = torch.compile(model)
    if ddp:
        model = DDP(model, device_ids=[int(os.environ['LOCAL_RANK'])] if device_type == 'cuda' else None)

    if master:
        os.makedirs(cfg['out_dir'], exist_ok=True)
        if ckpt is not None:
            truncate_metrics(metrics_path, iter_num)
        elif os.path.exists(metrics_path):
            os.remove(metrics_path)   # a fresh run starts a fresh log
        save_json(os.path.join(cfg['out_dir'], 'config.json'), cfg)   # what eval_stratified groups runs by
        pc = raw_model.param_counts()
        print(f"params: backbone {pc['backbone']:,} | tables {pc['tables']:,} | gate {pc['gate']:,} | total {pc['total']:,}")
    run = None
    if cfg['wandb_log'] and master:
        import wandb
        run = wandb.init(project=cfg['wandb_project'], group=cfg['wandb_group'] or None,
                         name=cfg['wandb_run_name'] or os.path.basename(cfg['out_dir'].rstrip('/')),
                         config={**cfg, 'params': raw_model.param_counts()}, id=wandb_id, resume='allow')
        wandb_id = run.id

    def all_reduce(v):
        if ddp:
            dist.all_reduce(v)
        return v

    def log_row(row):
        with open(metrics_path, 'a') as f:
            f.write(json.dumps(row, sort_keys=True) + '\n')
            f.flush()
            os.fsync(f.fileno())

    def save(iter_num):
        state = {'format_version': CKPT_VERSION, 'model': raw_model.state_dict(), 'optimizer': optimizer.state_dict(),
                 'iter_num': iter_num, 'best_val_loss': best_val_loss, 'config': cfg, 'model_args': vars(mcfg),
                 'data_signature': signature, 'wandb_id': wandb_id,
                 'rng': {'torch': torch.get_rng_state(), 'cuda': torch.cuda.get_rng_state() if device_type == 'cuda' else None}}
        save_torch(ckpt_path, state)

    tokens_per_iter = G * cfg['batch_size'] * cfg['block_size']
    peak = device_peak_flops(dev)
    resumed_at = iter_num if ckpt is not None else None
    bad_iter = torch.full((), -1, dtype=torch.long, device=dev)   # first non-finite loss, kept on device
    loss_acc = torch.zeros((), device=dev)
    x, y, c = to_device_batch(data, cfg, iter_num, rank * local_G, dev)   # first micro-batch
    t0, running_mfu, speeds = time.time(), -1.0, []
    while True:
        lr = get_lr(iter_num, cfg)
        for group in optimizer.param_groups:
            group['lr'] = lr

        if (iter_num % cfg['eval_interval'] == 0 or iter_num == cfg['max_iters']) and iter_num != resumed_at:
            m = evaluate(raw_model, data, val_starts, cfg['batch_size'], dev, autocast, orders, rank, world, all_reduce)
            if int(bad_iter) >= 0 or not math.isfinite(m['val_loss']):
                raise FloatingPointError(f"non-finite loss at iter {int(bad_iter) if int(bad_iter) >= 0 else iter_num}; "
                                         f"stopped. The last good checkpoint {ckpt_path} is untouched.")
            if master:
                print(f"eval {iter_num}: val {m['val_loss']:.4f} | hot {m['val_loss_hot']:.4f} cold {m['val_loss_cold']:.4f} "
                      f"delta {m['hot_cold_delta']:+.4f} | alpha hot {m.get('alpha_hot', float('nan')):.3f} "
                      f"cold {m.get('alpha_cold', float('nan')):.3f} | hot share {m['hot_share']:.3f}")
                log_row({'kind': 'eval', 'iter': iter_num, **m})
                if run is not None:
                    run.log({**{f'val/{k}': m[k] for k in ('val_loss', 'val_loss_hot', 'val_loss_cold')},
                             **{f'strat/{k}': v for k, v in m.items() if isinstance(v, float) and not k.startswith('val_loss')}},
                            step=iter_num)
                if m['val_loss'] < best_val_loss or cfg['always_save_checkpoint']:
                    best_val_loss = min(best_val_loss, m['val_loss'])
                    if iter_num > 0:
                        save(iter_num)
                if cfg['save_snapshots']:
                    save_torch(os.path.join(cfg['out_dir'], 'snapshots', f'iter_{iter_num:06d}.pt'),
                               {'iter_num': iter_num, 'model': raw_model.state_dict(), 'model_args': vars(mcfg)})
        if iter_num >= cfg['max_iters'] or (iter_num == 0 and cfg['eval_only']):
            break

        # forward/backward over this rank's share of the global micro-steps
        for j in range(local_G):
            if ddp:   # all-reduce gradients only on the last micro-step (nanoGPT)
                model.require_backward_grad_sync = j == local_G - 1
            with autocast:
                _, loss = model(x, y, ctx=c, step=iter_num)
                loss = loss / local_G
            # prefetch the next micro-batch while the GPU runs this forward (CUDA kernels are async)
            nxt_it, nxt_j = (iter_num, j + 1) if j + 1 < local_G else (iter_num + 1, 0)
            x, y, c = to_device_batch(data, cfg, nxt_it, rank * local_G + nxt_j, dev)
            loss.backward()
            loss_acc += loss.detach()
        if cfg['grad_clip'] != 0.0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg['grad_clip'])
        bad_iter = torch.where((bad_iter < 0) & ~torch.isfinite(loss_acc), iter_num, bad_iter)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cfg['wk_decay'] or cfg['wk_reset_interval'] or cfg['hot_weight_decay']:
            raw_model.gate_maintenance(iter_num, lr, cfg['wk_decay'], cfg['wk_reset_interval'], cfg['hot_weight_decay'])

        if iter_num % cfg['log_interval'] == 0:
            lossf = float(all_reduce(loss_acc.clone())) / world   # the sync happens only here
            if int(bad_iter) >= 0:
                raise FloatingPointError(f"non-finite loss at iter {int(bad_iter)}; stopped. The last good "
                                         f"checkpoint {ckpt_path} is untouched.")
            t1 = time.time()
            dt, t0 = (t1 - t0) / (cfg['log_interval'] if iter_num > 0 else 1), t1
            if iter_num > 0:
                speeds.append(tokens_per_iter / dt)
            if master:
                mfu = raw_model.estimate_mfu(tokens_per_iter, dt, peak)
                if iter_num >= 5 and math.isfinite(mfu):
                    running_mfu = mfu if running_mfu < 0 else 0.9 * running_mfu + 0.1 * mfu
                print(f"iter {iter_num}: loss {lossf:.4f}, lr {lr:.2e}, {dt*1000:.1f}ms, {tokens_per_iter/dt:,.0f} tok/s"
                      + (f", mfu {running_mfu*100:.1f}%" if running_mfu >= 0 else ''))
                log_row({'kind': 'train', 'iter': iter_num, 'train_loss': lossf, 'lr': lr})
                if run is not None:
                    run.log({'train/loss': lossf, 'train/lr': lr, 'perf/tok_per_s': tokens_per_iter / dt,
                             'perf/ms_per_iter': dt * 1000, 'perf/mfu': running_mfu}, step=iter_num)
        loss_acc.zero_()
        iter_num += 1
    if master and not cfg['eval_only']:   # throughput and size, for the study table (not in metrics.jsonl: timing is not reproducible)
        save_json(os.path.join(cfg['out_dir'], 'summary.json'), {
            'params': raw_model.param_counts(), 'tok_per_s_median': float(np.median(speeds)) if speeds else None,
            'device': torch.cuda.get_device_name(dev) if device_type == 'cuda' else 'cpu', 'world_size': world,
            'iter_num': iter_num})
    if run is not None:
        run.finish()
    if ddp:
        dist.destroy_process_group()

def to_device_batch(data, cfg, it, micro, dev):
    starts = data.train_starts(cfg['seed'], it, micro, cfg['batch_size'], cfg['block_size'])
    return to_device(data.windows('train', starts, cfg['block_size']), dev)

if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except (ConfigError, DataError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
