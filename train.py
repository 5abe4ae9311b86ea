"""
Train GPT-2 with Engram memory (nanoGPT style).

  python train.py configs/nine_100_400k.py --seed=1
  torchrun --standalone --nproc_per_node=8 train.py configs/hash_500k.py
  python train.py --help              # every config key with its default and meaning

Defaults are the paper's (Table 1, Nine-100/400K). Every eval appends the route-stratified metrics to
out_dir/metrics.jsonl (and wandb), so the flip analysis never depends on kept checkpoints.
"""
import sys

if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):   # before importing torch: help in a blink
    from configurator import print_help
    print_help(__file__)
    sys.exit(0)

import inspect
import json
import math
import os
import shutil
import signal
import time

import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import optim
import variants
from mdx import cs_lora
from checkpoint import (CKPT_VERSION, CheckpointWriter, build_model, check_signature, load_checkpoint, load_index,
                        load_weights, nonfinite)
from configurator import ConfigError, apply_config
from data import DataError, TokenData, atomic_write, read_metrics, save_json, to_device
from fsafe import DirLock, append_line, remove_stale_temps
from mdmix import Noise
from provenance import provenance
from metrics import evaluate, wandb_row
from model import EMBEDDINGS, FFN, GPTConfig, autocast_context, device_peak_flops

_not_config = set(globals())   # everything defined above; the config keys are what the block below adds
# -----------------------------------------------------------------------------
# config: paper defaults (Table 1/2); override with a config file and --key=value
# I/O
out_dir = 'out/nine_100_400k'   # the run dir: config.json, metrics.jsonl, ckpt.pt, summary.json
data_dir = 'data/fineweb_edu'   # a dir written by prepare_fineweb.py
eval_interval = 250           # iters between stratified evals (and the last iter)
log_interval = 10             # iters between train-loss lines (the only host sync of the step)
val_windows = 400             # the fixed validation set: the first N windows of val (paper: 100 eval iters x 4)
eval_batch_size = 16          # windows per eval forward (a speed knob: the validation set does not change)
eval_only = False             # evaluate the initial (or resumed) model once and stop
ckpt_interval = 1000          # iters between saves of ckpt.pt (exact resume), also at the end and on a stop signal; 0 = end only (1000: a paper-scale write outlasts 250 GPU iters)
save_best = False             # also keep best.pt: the weights of the eval with the lowest val_loss
save_snapshots = False        # weights-only snapshot at every eval (for key-stability analyses)
init_from = 'scratch'         # 'scratch' | 'resume' (from out_dir/ckpt.pt) | path/to/ckpt.pt (fine-tune its model)
overwrite = False             # True: a run that does not resume may replace the run out_dir holds (else it refuses)
final_ckpt = 'full'           # at the end, ckpt.pt keeps: 'full' (resumable further) | 'weights' (1/3 of the size: study.py's default)
dry_run = False               # check the config and data dir, print the run's footprint (parameters, disk) as JSON, write nothing
# wandb
wandb_log = False             # log to wandb (study.py and quickstart.sh turn it on; offline without a login)
wandb_project = 'engram-nine'   # wandb project name
wandb_group = ''              # runs of one config across seeds (default: none)
wandb_run_name = ''           # default: the out_dir's name
# data: the experiment is the global batch (batch_size x gradient_accumulation_steps windows of block_size);
# how it is split into micro-batches and processes is a speed knob only (the same windows either way)
batch_size = 16               # windows per micro-batch (lower it if memory runs out; raise accumulation to match)
gradient_accumulation_steps = 1   # micro-batches per iter, across all DDP processes (paper: 16 x 1024 = 4 x 4 = 16 x 1)
block_size = 1024             # tokens per window
seed = 0                      # model init and training windows
# model (GPT-2 small; paper Table 1)
n_layer = 12                  # transformer blocks
n_head = 12                   # attention heads
n_embd = 768                  # model width
dropout = 0.0                 # dropout in attention, MLP and embeddings
bias = True                   # biases in Linear and LayerNorm (GPT-2)
embedding = 'tied'            # token embedding: 'tied' to the head (GPT-2) | 'untied' | 'lowrank' | 'mihe' (mdx/embeddings.py)
embed_rank = 64               # lowrank: rank of the factorized embedding
embed_tables = 2              # mihe: T hash tables (n_embd / T each)
embed_buckets = 8192          # mihe: B rows per table
embed_hash = 'mdmix'          # mihe: 'mdmix' | 'mulxor'
embed_hash_seed = 0           # mihe: seed of the salts / multipliers
embed_seed_choices = 1        # mihe: > 1 = learned seeds: that many candidate seeds per table, straight-through logits
ffn = 'mlp'                   # the blocks' FFN: 'mlp' (GPT-2) | 'moe' (mixture of experts, mdx/hash_moe.py) | 'pkm' (+ product keys, mdx/pkm.py)
moe_experts = 4               # moe: experts per layer, each GPT-2's MLP (active parameters = the dense MLP's)
moe_router = 'hash'           # moe: 'hash' (MD-mix of the token id) | 'balanced' (unigram-count balanced) | 'switch' (learned top-1)
moe_choices = 1               # moe hash: hashed candidates per token; > 1 picks the one with the highest load bias (least loaded)
moe_capacity = 1.25           # moe: tokens per expert at most, x tokens / experts (the rest skip this FFN)
moe_bias_rate = 0.0           # moe: loss-free load balancing step of the routing bias (0 = off)
pkm_layers = (2, 4, 6)        # pkm: blocks whose FFN adds a product-key memory
pkm_keys = 'seeded'           # pkm: 'seeded' (fixed MD-mix Rademacher codes) | 'learned' sub-keys
pkm_subkeys = 256             # pkm: sub-keys per half (n^2 value rows per layer)
pkm_key_dim = 32              # pkm: query dims per half
pkm_topk = 8                  # pkm: top-k per half and slots read
attention = 'causal'          # 'causal' (GPT-2, SDPA) | 'lsh' (MD-banded LSH, mdx/attention_lsh.py) | 'sketch' / 'bucket' (mdx/attention_sketch.py)
lsh_bucket_size = 64          # lsh: mean keys per bucket (T // it buckets) and the sorted chunk length
lsh_rounds = 2                # lsh: hash rounds
lsh_window = 64               # lsh: the local window every query also reads
sketch_width = 4              # sketch: CountSketch width
sketch_tau = 2.0              # sketch: skip pairs whose sketched score is more than tau below the row's best
bucket_count = 8              # bucket: key buckets
bucket_tau = 0.01             # bucket: drop buckets whose bound on their contribution is below tau
block = 'prenorm'             # 'prenorm' (GPT-2) | 'reversible' (coupling blocks, activations recomputed in backward: mdx/reversible.py)
memory = 'nine'               # 'none' (baseline) | 'hash' (multi-head hashed tables) | 'nine' (MPHF hot tier + hashed cold tier)
engram_layers = (2, 4, 6)     # 0-based blocks with Engram memory (their tables are shared)
ngram_orders = (2, 3)         # n-gram orders of the memory
engram_heads = 2              # K hashed heads per order
engram_head_dim = 64          # d per head: memory vector = orders x K x d
table_size = 400_000          # slots per hashed head (Hash) / per cold head (Nine)
hot_size = 100_000            # N_hot: Nine's hot n-grams per order; every model's is_hot label
engram_hash = 'mulxor'        # hash family of the heads: 'mulxor' (multiply-xor + fmix64) | 'mdmix' (MD5 steps)
engram_hash_seed = 0          # seed of the hash multipliers / salts (the same for every seed: see hash_seed_from_seed)
hash_seed_from_seed = False   # True: engram_hash_seed = seed, so each seed also draws its own collision pattern
label_smoothing = 0.0         # cross-entropy label smoothing in training (MD-mix ablation)
# the paper's variants (variants.py; §6.3, §7.2, the DeepSeek demo): all off by default = the paper's model
engram_shared_tables = True   # False: each Engram layer has its own tables (3x the table parameters)
engram_gate = 'sigmoid'       # 'sigmoid' (paper Eq. 4) | 'signed_sqrt' (DeepSeek demo)
engram_short_conv = False     # DeepSeek demo's causal depthwise conv after the gate
# fine-tuning with adapters (mdx/cs_lora.py; with init_from=<ckpt.pt>, only the adapters train)
adapter = 'none'              # 'none' | 'lora' | 'cslora' (Count-Sketch LoRA: entries hashed from a shared pool)
adapter_rank = 8              # rank of each adapter (attn.c_attn and mlp.c_fc of every block)
adapter_pool = 0              # cslora: pool parameters in all (0 = LoRA's count at adapter_rank: equal parameters)
hot_index = 'mphf'            # 'hashed': membership-only Nine (hot rows indexed by hashing, with collisions)
hot_collision = 1             # controlled collisions: N_hot hot keys into ceil(N_hot / c) rows
gate_keys = 'shared'          # 'decoupled': W_K^hot and W_K^cold
gate_inputs = ()              # any of 'is_hot', 'log_freq', 'collision'
hot_layers = ()               # Engram layers that read the hot tier; () = all
hot_dropout = 0.0             # dropout of whole hot rows
hot_fingerprint_bits = 0      # 0: exact membership; 8/16: Algorithm 1's b-bit fingerprint (non-members may pass)
hot_collision_mode = 'random' # with hot_collision > 1: 'random' (by MPHF slot) | 'semantic' (by likely next tokens)
gate_credit = 0.0             # weight of the gate credit loss (alpha where the memory does not lower the loss)
hot_teacher = 0.0             # weight of the loss pulling hot n-grams' cold rows to their hot read
hot_ramp_iters = 0            # phased hot tier: hot reads blend in from the cold read over these iters
hot_reg_ramp_iters = 0        # hot_dropout / hot_weight_decay grow linearly from 0 over these iters
hot_weight_decay = 0.0        # extra decoupled weight decay on hot rows (per step: w -= lr * this * w)
wk_decay = 0.0                # W_K forgetting: w_k *= 1 - wk_decay after every step
wk_reset_interval = 0         # re-initialize W_K every this many iters (0 = never)
# MD-mix deterministic noise (mdmix.py); every sigma 0 = off, bit-identical to no noise
noise_emb = 0.0               # sigma of the noise on token embeddings
noise_qk = 0.0                # ... on attention queries and keys
noise_logits = 0.0            # ... on the output logits
noise_mem = 0.0               # ... on the Engram memory vector (rows in noise_mem_scope)
noise_mem_scope = 'all'       # 'all' | 'hot' | 'cold' rows of Engram memory
noise_kind = 'gaussian'       # 'gaussian' | 'rademacher'
noise_schedule = 'constant'   # 'constant' | 'cosine_tail' (cosine to zero over the last noise_tail_frac)
noise_tail_frac = 0.2         # the final fraction of training for 'cosine_tail'
noise_seed = 0                # seed of the noise hash
# AdamW (paper Table 1)
learning_rate = 6e-4          # peak learning rate
max_iters = 5000              # training iterations
weight_decay = 1e-1           # decoupled weight decay of 2-D weights (tables included)
beta1 = 0.9                   # AdamW betas
beta2 = 0.95                  # (paper)
grad_clip = 1.0               # global gradient-norm clip (0 = off)
table_optimizer = 'adamw'     # 'adamw' (paper: dense, every row every step) | 'rowwise' (lazy, only rows read)
decay_lr = True               # linear warmup then cosine decay; False = constant learning_rate
warmup_iters = 100            # linear warmup iters
lr_decay_iters = 5000         # the cosine reaches min_lr here
min_lr = 6e-5                 # the end of the cosine
# system
backend = 'nccl'              # DDP backend on CUDA; CPU always uses gloo
device = 'auto'               # 'auto' (cuda if available, else cpu) | 'cpu' | 'cuda' | 'cuda:1' ...
dtype = 'auto'                # 'auto' (bfloat16 on CUDA, float32 on CPU) | 'float32' | 'bfloat16' ('float16' is refused: no GradScaler)
compile = True                # torch.compile (CUDA only)
resume_changes = ()           # experiment keys a resume may change on purpose, e.g. ('learning_rate',); 'global_batch'
# -----------------------------------------------------------------------------
config_keys = [k for k in globals() if k not in _not_config and not k.startswith('_')]

def get_lr(it, cfg):
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters (nanoGPT)."""
    if not cfg['decay_lr']:
        return cfg['learning_rate']
    if it < cfg['warmup_iters']:
        return cfg['learning_rate'] * (it + 1) / (cfg['warmup_iters'] + 1)
    if it > cfg['lr_decay_iters']:
        return cfg['min_lr']
    ratio = (it - cfg['warmup_iters']) / max(1, cfg['lr_decay_iters'] - cfg['warmup_iters'])
    return cfg['min_lr'] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg['learning_rate'] - cfg['min_lr'])

def model_config(cfg, vocab_size):
    keys = GPTConfig.__dataclass_fields__
    args = {k: cfg[k] for k in keys if k in cfg}
    args['vocab_size'] = vocab_size
    if cfg.get('hash_seed_from_seed'):
        args['engram_hash_seed'] = cfg['seed']
    return GPTConfig(**args)

def keep_on_resume(row, ckpt_iter):
    """The checkpoint of iter k is saved after eval k and before train step k: rows logged later
    (a crash between a log and the next save) are redone by the resumed run."""
    return row['iter'] <= ckpt_iter if row['kind'] == 'eval' else row['iter'] < ckpt_iter

def truncate_metrics(path, ckpt_iter):
    if not os.path.exists(path):
        return
    rows = [json.dumps(r, sort_keys=True) + '\n' for r in read_metrics(path) if keep_on_resume(r, ckpt_iter)]
    atomic_write(path, lambda f: f.writelines(rows), mode='w')

# -----------------------------------------------------------------------------
# what a config may ask for: checked before anything is written

POSITIVE = ('eval_interval', 'log_interval', 'val_windows', 'eval_batch_size', 'batch_size', 'gradient_accumulation_steps',
            'block_size', 'n_layer', 'n_head', 'n_embd', 'engram_heads', 'engram_head_dim', 'table_size', 'hot_size',
            'learning_rate', 'adapter_rank', 'embed_rank', 'embed_tables', 'embed_buckets', 'embed_seed_choices',
            'moe_experts', 'moe_choices', 'moe_capacity', 'pkm_subkeys', 'pkm_key_dim', 'pkm_topk')
NON_NEGATIVE = ('ckpt_interval', 'max_iters', 'warmup_iters', 'lr_decay_iters', 'min_lr', 'weight_decay', 'grad_clip',
                'label_smoothing', 'hot_weight_decay', 'wk_decay', 'wk_reset_interval', 'noise_emb', 'noise_qk',
                'noise_logits', 'noise_mem', 'seed', 'engram_hash_seed', 'noise_seed', 'adapter_pool', 'gate_credit', 'embed_hash_seed', 'moe_bias_rate',
                'hot_teacher', 'hot_ramp_iters', 'hot_reg_ramp_iters')
CHOICES = {'memory': ('none', 'hash', 'nine'), 'table_optimizer': ('adamw', 'rowwise'), 'hot_collision_mode': ('random', 'semantic'),
           'dtype': ('auto', 'float32', 'bfloat16', 'float16'), 'adapter': ('none', 'lora', 'cslora'),
           'embedding': tuple(EMBEDDINGS), 'embed_hash': ('mdmix', 'mulxor'), 'ffn': tuple(FFN),
           'moe_router': ('hash', 'balanced', 'switch'), 'pkm_keys': ('seeded', 'learned')}

def validate_config(cfg):
    """Every value in range and every combination able to train something, or ConfigError naming the key."""
    for k in POSITIVE:
        if not cfg[k] > 0:
            raise ConfigError(f"--{k} must be > 0, got {cfg[k]!r}")
    for k in NON_NEGATIVE:
        if not cfg[k] >= 0:
            raise ConfigError(f"--{k} must be >= 0, got {cfg[k]!r}")
    if cfg['final_ckpt'] not in ('full', 'weights'):
        raise ConfigError(f"--final_ckpt must be 'full' or 'weights', got {cfg['final_ckpt']!r}")
    for k, choices in CHOICES.items():
        if cfg[k] not in choices:
            raise ConfigError(f"--{k} must be one of {choices}, got {cfg[k]!r}")
    if cfg['init_from'] not in ('scratch', 'resume') and not cfg['init_from'].endswith('.pt'):
        raise ConfigError(f"--init_from must be 'scratch', 'resume' or a checkpoint path (…/ckpt.pt), got {cfg['init_from']!r}")
    if not (cfg['device'] in ('auto', 'cpu', 'cuda') or cfg['device'].startswith('cuda:')):
        raise ConfigError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {cfg['device']!r}")
    for k in ('dropout', 'hot_dropout', 'label_smoothing', 'noise_tail_frac'):
        if not 0 <= cfg[k] < 1:
            raise ConfigError(f"--{k} must be in [0, 1), got {cfg[k]!r}")
    if cfg['max_iters'] == 0 and not cfg['eval_only']:
        raise ConfigError("--max_iters=0 trains nothing; pass --eval_only=True to only evaluate")
    if not 0 < cfg['beta1'] < 1 or not 0 < cfg['beta2'] < 1:
        raise ConfigError(f"--beta1 and --beta2 must be in (0, 1), got {cfg['beta1']}, {cfg['beta2']}")
    if cfg['decay_lr'] and cfg['warmup_iters'] > cfg['lr_decay_iters']:
        raise ConfigError(f"--warmup_iters {cfg['warmup_iters']} > --lr_decay_iters {cfg['lr_decay_iters']}: no decay would happen")
    if cfg['dtype'] == 'float16':
        raise ConfigError("--dtype='float16' needs loss scaling (a GradScaler), which this loop does not do: its "
                          "small gradients would flush to zero. Use 'bfloat16' (A100/H100, the default on CUDA) or 'float32'.")
    if cfg['min_lr'] > cfg['learning_rate']:
        raise ConfigError(f"--min_lr {cfg['min_lr']} > --learning_rate {cfg['learning_rate']}")
    if cfg['memory'] == 'none':
        reads_memory = [k for k in ('hot_dropout', 'hot_weight_decay', 'wk_decay', 'noise_mem', 'gate_credit') if cfg[k]]
        reads_memory += [k for k in ('gate_inputs', 'hot_layers') if cfg[k]]
        reads_memory += [k for k, d in (('gate_keys', 'shared'), ('hot_index', 'mphf'), ('engram_gate', 'sigmoid')) if cfg[k] != d]
        if reads_memory:
            raise ConfigError(f"memory='none' has no Engram memory, but {', '.join('--' + k for k in reads_memory)} "
                              f"act on it; set --memory='hash' or 'nine', or drop them")
    elif not cfg['engram_layers']:
        raise ConfigError(f"memory={cfg['memory']!r} with --engram_layers=() reads no memory; name the Engram blocks")
    if cfg['memory'] != 'nine':
        nine_only = [k for k in ('hot_dropout', 'hot_weight_decay', 'hot_layers', 'hot_fingerprint_bits', 'hot_teacher',
                                 'hot_ramp_iters', 'hot_reg_ramp_iters') if cfg[k]]
        nine_only += [k for k, d in (('hot_index', 'mphf'), ('hot_collision', 1), ('hot_collision_mode', 'random')) if cfg[k] != d]
        if cfg['memory'] == 'hash' and nine_only:
            raise ConfigError(f"{', '.join('--' + k for k in nine_only)} act on Nine's hot tier; Hash has none (--memory='nine')")
    if cfg['hot_reg_ramp_iters'] and not (cfg['hot_dropout'] or cfg['hot_weight_decay']):
        raise ConfigError("--hot_reg_ramp_iters ramps --hot_dropout / --hot_weight_decay; set one of them")
    if cfg['hot_collision_mode'] != 'random' and cfg['hot_collision'] == 1:
        raise ConfigError(f"--hot_collision_mode={cfg['hot_collision_mode']!r} chooses which hot keys share rows; set --hot_collision > 1")
    if cfg['noise_mem_scope'] != 'all' and cfg['memory'] != 'nine' and cfg['noise_mem']:
        raise ConfigError(f"--noise_mem_scope={cfg['noise_mem_scope']!r} needs Nine's hot/cold rows (--memory='nine')")

# keys whose change makes another experiment: a resume must keep them (resume_changes lists deliberate exceptions)
RUN_KEYS = ('data_dir', 'out_dir', 'eval_interval', 'log_interval', 'eval_batch_size', 'eval_only', 'ckpt_interval',
            'save_best', 'save_snapshots', 'init_from', 'overwrite', 'final_ckpt', 'dry_run', 'wandb_log', 'wandb_project', 'wandb_group', 'wandb_run_name',
            'batch_size', 'gradient_accumulation_steps', 'max_iters', 'backend', 'device', 'dtype', 'compile',
            'resume_changes')

def resume_differences(saved, cfg):
    """Experiment keys that differ between a checkpoint's config and this run's (the global batch counts,
    not its split; data is checked by its signature, not its path)."""
    diff = {k: (saved.get(k), cfg[k]) for k in cfg if k not in RUN_KEYS and k not in cfg['resume_changes']
            and saved.get(k) != cfg[k] and not (isinstance(cfg[k], tuple) and tuple(saved.get(k) or ()) == cfg[k])}
    batch = lambda c: c['batch_size'] * c['gradient_accumulation_steps']
    if 'global_batch' not in cfg['resume_changes'] and batch(saved) != batch(cfg):
        diff['global_batch'] = (batch(saved), batch(cfg))
    return diff

# -----------------------------------------------------------------------------

def resolve_system(cfg):
    """'auto' device and dtype: CUDA with bf16 where there is one, else CPU with float32."""
    if cfg['device'] == 'auto':
        cfg['device'] = 'cuda' if torch.cuda.is_available() else 'cpu'
    if cfg['dtype'] == 'auto':
        cfg['dtype'] = 'bfloat16' if cfg['device'].startswith('cuda') and torch.cuda.is_bf16_supported() else 'float32'

def init_distributed(cfg):
    """(ddp, rank, world, device) from torchrun's environment; gloo on CPU."""
    dev = cfg['device']
    if int(os.environ.get('RANK', -1)) == -1:
        return False, 0, 1, dev
    dist.init_process_group(backend=cfg['backend'] if dev.startswith('cuda') else 'gloo')
    if dev.startswith('cuda'):
        dev = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(dev)
    return True, dist.get_rank(), dist.get_world_size(), dev

def available_ram():
    """Bytes of memory the kernel can give this process now (MemAvailable), else the machine's total."""
    try:
        with open('/proc/meminfo') as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable:'))
    except (OSError, StopIteration, ValueError):
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')

def wrap_ddp(model, device_type):
    """DDP without broadcast_buffers: the buffers are the n-gram index (data, identical on every rank,
    several MB), not state to synchronize before every forward."""
    no_sync = ({'forward_sync_buffers': False} if 'forward_sync_buffers' in inspect.signature(DDP).parameters
               else {'broadcast_buffers': False})                                     # torch >= 2.13 renamed it
    ddp = DDP(model, device_ids=[int(os.environ['LOCAL_RANK'])] if device_type == 'cuda' else None, **no_sync)
    _KEEP_UNTIL_EXIT.append(ddp)
    return ddp

# Never freed (exit_now ends the process): freeing a DDP model's Reducer frees gloo's process group, which can
# deadlock (its worker thread waits for the GIL to free a tensor while the main thread, holding the GIL, joins
# it). py-spy showed it both when main() returned and at interpreter exit, in tests/test_train.py's DDP runs.
_KEEP_UNTIL_EXIT = []


class Trainer:
    """One training run: setup (data, model, optimizer, resume), the step, and eval / log / save."""

    def __init__(self, cfg):
        self.cfg = cfg
        validate_config(cfg)
        resolve_system(cfg)
        self.ddp, self.rank, self.world, self.dev = init_distributed(cfg)
        self.master = self.rank == 0
        self.stop_signal, self.stopped = 0, 0     # the signal asked to stop, the one the run stopped on
        if cfg['gradient_accumulation_steps'] % self.world:
            self.split_for_world()
        self.local_G = cfg['gradient_accumulation_steps'] // self.world
        self.device_type = 'cuda' if self.dev.startswith('cuda') else 'cpu'
        self.autocast = autocast_context(self.device_type, cfg['dtype'])
        if self.device_type == 'cuda':
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(cfg['seed'])
        self.out_dir = cfg['out_dir']
        self.ckpt_path = os.path.join(self.out_dir, 'ckpt.pt')
        self.metrics_path = os.path.join(self.out_dir, 'metrics.jsonl')
        self.setup_data()
        self.setup_model()
        if not cfg['dry_run']:
            self.setup_logs()

    def split_for_world(self):
        """torchrun with more processes than micro-steps: the same global batch in smaller micro-batches (the
        windows are split-invariant, so it is the same run), or an error when the windows do not divide."""
        cfg, world = self.cfg, self.world
        B, G = cfg['batch_size'], cfg['gradient_accumulation_steps']
        total = B * G
        if total % world:
            raise ConfigError(f"the global batch of {total} windows (batch_size {B} x gradient_accumulation_steps {G}) "
                              f"does not divide over {world} processes; use a process count that divides {total}")
        b = max(d for d in range(1, B + 1) if (total // world) % d == 0)
        cfg['batch_size'], cfg['gradient_accumulation_steps'] = b, total // b
        if self.master:
            print(f"{world} processes: micro-batches of {b} windows, {total // b // world} per process per iter "
                  f"(the global batch of {total} windows unchanged)")

    def setup_data(self):
        cfg = self.cfg
        self.orders = tuple(cfg['ngram_orders'])
        self.data = TokenData(cfg['data_dir'], max(self.orders) - 1)
        self.data.check_block_size(cfg['block_size'])
        self.val_starts = self.data.val_starts(cfg['block_size'], cfg['val_windows'])

    def setup_model(self):
        """The model (from scratch, the run's checkpoint, or another run's to fine-tune), its optimizer,
        and the run's counters."""
        cfg = self.cfg
        vocab = self.data.meta['tokens']['vocab_size']
        base = self.fine_tune_base() if cfg['init_from'] not in ('scratch', 'resume') else None
        self.mcfg = model_config(cfg, -(-vocab // 64) * 64)
        index, self.signature = load_index(cfg['data_dir'], self.data.meta, self.mcfg)
        if base is not None:
            saved, current = dict(base['data_signature']), dict(self.signature)
            if self.mcfg.memory != 'nine':      # Hash and baseline do not route by the hot tier: any data dir's will do
                saved.pop('hot_size_keys_sha256'), current.pop('hot_size_keys_sha256')
            check_signature(saved, current, f"checkpoint {cfg['init_from']}")
        self.iter_num, self.best_val_loss, self.wandb_id, ckpt = 0, 1e9, None, None
        if cfg['init_from'] == 'resume':
            ckpt = load_checkpoint(self.ckpt_path)
            check_signature(ckpt['data_signature'], self.signature, f"checkpoint {self.ckpt_path}")
            diff = resume_differences(ckpt['config'], cfg)
            if diff:
                raise ConfigError(f"resuming {self.ckpt_path} with another experiment:\n" + '\n'.join(
                    f"    {k}: checkpoint {a!r}, now {b!r}" for k, a, b in ((k, *v) for k, v in sorted(diff.items()))) +
                    f"\n  Resume with the checkpoint's values, or allow the change explicitly: "
                    f"--resume_changes=\"{tuple(sorted(diff))}\"")
            self.iter_num, self.best_val_loss, self.wandb_id = ckpt['iter_num'], ckpt.get('best_val_loss', 1e9), ckpt.get('wandb_id')
        self.finished = ckpt is not None and self.iter_num >= cfg['max_iters'] and not cfg['eval_only']
        if self.finished:                   # nothing to build: main() says so and stops
            return
        if ckpt is not None and 'optimizer' not in ckpt:
            raise DataError(f"{self.ckpt_path} holds the weights only (a finished run saved with final_ckpt='weights'), so "
                            f"training cannot resume from it. Evaluate or sample it, or retrain with --final_ckpt='full'.")
        self.check_memory(index)
        if cfg['dry_run']:
            return
        noise = Noise.from_config(cfg) if any(cfg[k] > 0 for k in ('noise_emb', 'noise_qk', 'noise_logits', 'noise_mem')) else None
        self.raw_model = build_model(self.mcfg, index, noise)
        if ckpt is not None:
            load_weights(self.raw_model, ckpt['model'], f"checkpoint {self.ckpt_path}")
        if base is not None:                    # the base weights; with adapters, only the adapters train
            load_weights(self.raw_model, cs_lora.base_state(base['model'], self.raw_model), f"checkpoint {cfg['init_from']}",
                         allow_missing=cs_lora.adapter_names(self.raw_model))
            if self.mcfg.adapter != 'none':
                trainable = {id(p) for p in cs_lora.adapter_parameters(self.raw_model)}
                for p in self.raw_model.parameters():
                    p.requires_grad_(id(p) in trainable)
        self.raw_model.to(self.dev)
        self.optimizer = optim.configure_optimizers(self.raw_model, cfg['weight_decay'], cfg['learning_rate'],
                                                    (cfg['beta1'], cfg['beta2']), self.device_type, cfg['table_optimizer'])
        if ckpt is not None:
            self.optimizer.load_state_dict(ckpt['optimizer'])
            torch.set_rng_state(ckpt['rng']['torch'])
            if self.device_type == 'cuda' and ckpt['rng'].get('cuda') is not None:
                torch.cuda.set_rng_state(ckpt['rng']['cuda'])
        self.resumed_at = self.iter_num if ckpt is not None else None
        self.model = self.raw_model
        if cfg['compile'] and self.device_type == 'cuda':
            self.model = torch.compile(self.model)
        self.eval_model = self.model       # compiled too (a second graph for eval mode), not DDP-wrapped
        if self.ddp:
            self.model = wrap_ddp(self.model, self.device_type)
        self.writer = CheckpointWriter()

    def check_memory(self, index):
        """Refuse a run that cannot fit before allocating it (a typo in block_size or n_embd would otherwise take
        all memory), with the estimate: fp32 weights, grads and two AdamW moments (16 B per parameter, counted on
        the meta device) plus, on CPU, the activations of a micro-batch (roughly). On CUDA the activations are
        the micro-batch fallback's job."""
        c, m = self.cfg, self.mcfg
        with torch.device('meta'):
            n = self.n_params = sum(p.numel() for p in build_model(m, index).parameters())
        state = 16 * n
        act = c['batch_size'] * c['block_size'] * (m.n_layer * m.n_embd * 34 + m.vocab_size * 8)
        if self.device_type == 'cuda':
            need, have = state, torch.cuda.get_device_properties(self.dev).total_memory
        else:
            need, have = state + act, available_ram()
        if need > have:
            raise ConfigError(f"this run needs about {need / 2**30:,.1f} GiB ({n:,} parameters: {state / 2**30:,.1f} GiB of "
                              f"weights, grads and AdamW moments" + ('' if self.device_type == 'cuda' else
                              f"; {act / 2**30:,.1f} GiB of activations per micro-batch") + f") but {self.dev} has "
                              f"{have / 2**30:,.1f} GiB. Lower --batch_size (raise --gradient_accumulation_steps to keep the "
                              f"global batch), --block_size or the model size.")

    def footprint(self):
        """What the run keeps on disk (bytes): ckpt.pt (fp32 weights; + two AdamW moments unless final_ckpt='weights'),
        best.pt and the snapshots when asked, and the temp file of a write in progress (a full checkpoint)."""
        c, weights = self.cfg, 4 * self.n_params
        full = 3 * weights
        snapshots = (c['max_iters'] // c['eval_interval'] + 2) * weights if c['save_snapshots'] else 0
        keeps = (weights if c['final_ckpt'] == 'weights' else full) + (weights if c['save_best'] else 0) + snapshots
        return {'params': self.n_params, 'ckpt_bytes': full, 'keeps_bytes': keeps, 'temp_bytes': full}

    def fine_tune_base(self):
        """The checkpoint a fine-tune starts from; its model is this run's (the config's model keys follow it)."""
        cfg = self.cfg
        base = load_checkpoint(cfg['init_from'], hint="--init_from takes a checkpoint path, 'scratch' or 'resume'.")
        keep = ('vocab_size', 'adapter', 'adapter_rank', 'adapter_pool')
        changed = {k: v for k, v in base['model_args'].items() if k in cfg and k not in keep and cfg[k] != v}
        for k, v in changed.items():
            cfg[k] = tuple(v) if isinstance(cfg[k], tuple) else v
        if changed and self.master:
            print(f"fine-tuning {cfg['init_from']}: its model settings apply ({', '.join(sorted(changed))})")
        return base

    def setup_logs(self):
        """The run dir (locked: one writer; config.json; metrics.jsonl cut back to the checkpoint on resume) and wandb."""
        cfg, self.run = self.cfg, None
        if not self.master:
            return
        self.lock = DirLock(self.out_dir)
        if self.finished:
            return
        if remove_stale_temps(self.out_dir):
            print(f"removed the temp files of writes killed in {self.out_dir}")
        self.clear_run_dir()
        if self.resumed_at is not None:
            truncate_metrics(self.metrics_path, self.iter_num)
        save_json(os.path.join(self.out_dir, 'config.json'), {**cfg, 'data_signature': self.signature,   # what reports group runs by
                                                              'provenance': provenance(self.dev, self.world)})
        if cfg['decay_lr'] and cfg['max_iters'] < cfg['lr_decay_iters']:
            print(f"note: --max_iters {cfg['max_iters']} < lr_decay_iters {cfg['lr_decay_iters']}: the cosine stops part way "
                  f"(lr {get_lr(cfg['max_iters'], cfg):.2e} at the end, not {cfg['min_lr']:.0e}); pass --lr_decay_iters="
                  f"{cfg['max_iters']} to decay fully")
        pc = self.raw_model.param_counts()
        t = self.data.meta['tokens']
        B, G, T = cfg['batch_size'], cfg['gradient_accumulation_steps'], cfg['block_size']
        print(f"run {self.out_dir}: data {cfg['data_dir']} ({t['tokenizer']}, {t['n_train']:,} train tokens), "
              f"{self.dev} {cfg['dtype']}, {cfg['max_iters']} iters of {B * G} x {T} tokens "
              f"({G} micro-batch{'es' if G > 1 else ''} of {B}{f' over {self.world} processes' if self.ddp else ''})")
        print(f"params: backbone {pc['backbone']:,} | tables {pc['tables']:,} | gate {pc['gate']:,} | "
              + (f"adapters {pc['adapter']:,} (the only ones trained) | " if pc['adapter'] else '') + f"total {pc['total']:,}")
        if cfg['wandb_log']:
            try:
                import wandb
            except ImportError:
                print("note: wandb is not installed here; logging to metrics.jsonl only (pip install wandb for dashboards)")
                return
            self.run = wandb.init(project=cfg['wandb_project'], group=cfg['wandb_group'] or None,
                                  name=cfg['wandb_run_name'] or os.path.basename(self.out_dir.rstrip('/')),
                                  config={**cfg, 'params': pc}, id=self.wandb_id, resume='allow')
            self.wandb_id = self.run.id

    def clear_run_dir(self):
        """What the run dir holds stops being true once this run starts: summary.json first (a run cut short
        must never look finished); a fresh run replaces a run only when told (--overwrite=True)."""
        summary = os.path.join(self.out_dir, 'summary.json')
        if self.resumed_at is not None:
            if os.path.exists(summary):
                os.remove(summary)          # resumed to train further: finished again only at its new end
            return
        held = [f for f in ('summary.json', 'ckpt.pt') if os.path.lexists(os.path.join(self.out_dir, f))]
        if held and not self.cfg['overwrite']:
            raise DataError(f"{self.out_dir} holds a run ({', '.join(held)}); a fresh run would destroy it. Resume it "
                            f"with --init_from='resume', choose another --out_dir, or pass --overwrite=True to replace it.")
        for f in ('summary.json', 'ckpt.pt', 'best.pt', 'metrics.jsonl', 'snapshots'):
            p = os.path.join(self.out_dir, f)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.remove(p)

    # -- helpers -------------------------------------------------------------------

    def all_reduce(self, v):
        if self.ddp:
            dist.all_reduce(v)
        return v

    def log_row(self, row):
        append_line(self.metrics_path, json.dumps(row, sort_keys=True) + '\n')

    def stop_non_finite(self, it):
        raise FloatingPointError(f"non-finite loss at iter {it}; stopped. The last good checkpoint {self.ckpt_path} is untouched.")

    def batch(self, it, micro):
        """Global micro-batch `micro` of iteration `it`: global samples [micro*B, (micro+1)*B)."""
        B, T = self.cfg['batch_size'], self.cfg['block_size']
        starts = self.data.train_starts(self.cfg['seed'], it, range(micro * B, (micro + 1) * B), T)
        return to_device(self.data.windows('train', starts, T), self.dev)

    # -- eval / log / save ---------------------------------------------------------

    def evaluate(self):
        """Stratified metrics on the fixed validation windows: printed, logged, and a checkpoint saved."""
        cfg, it = self.cfg, self.iter_num
        m = evaluate(self.eval_model, self.data, self.val_starts, cfg['eval_batch_size'], self.dev, self.autocast, self.orders,
                     self.rank, self.world, self.all_reduce)
        if int(self.bad_iter) >= 0 or not math.isfinite(m['val_loss']):
            self.stop_non_finite(int(self.bad_iter) if int(self.bad_iter) >= 0 else it)
        if not self.master:
            return
        print(f"eval {it}: val {m['val_loss']:.4f} | hot {m['val_loss_hot']:.4f} cold {m['val_loss_cold']:.4f} "
              f"delta {m['hot_cold_delta']:+.4f} | alpha hot {m.get('alpha_hot', float('nan')):.3f} "
              f"cold {m.get('alpha_cold', float('nan')):.3f} | hot share {m['hot_share']:.3f}")
        self.log_row({'kind': 'eval', 'iter': it, **m})
        self.last_eval = {'iter': it, **{k: m[k] for k in ('val_loss', 'val_loss_hot', 'val_loss_cold', 'hot_cold_delta')}}
        if self.run is not None:
            self.run.log(wandb_row(m), step=it)
        if m['val_loss'] < self.best_val_loss:
            self.best_val_loss = m['val_loss']
            if cfg['save_best']:
                self.check_finite('best.pt')
                self.writer.save(os.path.join(self.out_dir, 'best.pt'), self.weights(val_loss=m['val_loss']))
        if cfg['save_snapshots']:
            self.writer.save(os.path.join(self.out_dir, 'snapshots', f'iter_{it:06d}.pt'), self.weights())

    def weights(self, **extra):
        """Weights only, with what eval needs to rebuild the model (best.pt, snapshots)."""
        return {'format_version': CKPT_VERSION, 'iter_num': self.iter_num, 'model': self.raw_model.state_dict(),
                'model_args': vars(self.mcfg), 'config': self.cfg, 'data_signature': self.signature, **extra}

    def check_finite(self, what):
        """Never save NaN/inf: "the last good checkpoint" must stay true."""
        named = list(self.raw_model.named_parameters()) + [
            (f'optimizer state {k} of param {i}', v) for i, st in enumerate(self.optimizer.state.values())
            for k, v in st.items() if isinstance(v, torch.Tensor) and v.dim() > 0]
        bad = nonfinite(named)
        if bad:
            raise FloatingPointError(f"non-finite values in {', '.join(bad[:3])} at iter {self.iter_num}; {what} not saved. "
                                     f"The last good checkpoint {self.ckpt_path} is untouched.")

    def save(self):
        """ckpt.pt: everything an exact resume needs, written in the background (CheckpointWriter); at the end
        with final_ckpt='weights', the weights only (a finished run needs no AdamW moments to be evaluated)."""
        cuda = self.device_type == 'cuda'
        self.check_finite(self.ckpt_path)
        if not self.master:                 # the ranks hold the same state: one writer (rank 0)
            return
        if self.iter_num >= self.cfg['max_iters'] and self.cfg['final_ckpt'] == 'weights':
            self.writer.save(self.ckpt_path, self.weights())
            return
        self.writer.save(self.ckpt_path, {
            **self.weights(), 'optimizer': self.optimizer.state_dict(), 'best_val_loss': self.best_val_loss,
            'wandb_id': self.wandb_id,
            'rng': {'torch': torch.get_rng_state(), 'cuda': torch.cuda.get_rng_state() if cuda else None}})

    def log_train(self, lr):
        """Every log_interval: the loss (the only host sync of the step), speed and MFU."""
        cfg, it = self.cfg, self.iter_num
        lossf = float(self.all_reduce(self.loss_acc.clone())) / self.world
        if int(self.bad_iter) >= 0:
            self.stop_non_finite(int(self.bad_iter))
        t1 = time.time()
        dt, self.t0 = (t1 - self.t0) / (cfg['log_interval'] if it > 0 else 1), t1
        if it > 0:
            self.speeds.append(self.tokens_per_iter / dt)
        if not self.master:
            return
        mfu = self.raw_model.estimate_mfu(self.tokens_per_iter, dt, self.peak)
        if it >= 5 and math.isfinite(mfu):
            self.running_mfu = mfu if self.running_mfu < 0 else 0.9 * self.running_mfu + 0.1 * mfu
        eta = (self.cfg['max_iters'] - it) * dt
        print(f"iter {it}: loss {lossf:.4f}, lr {lr:.2e}, {dt*1000:.1f}ms, {self.tokens_per_iter/dt:,.0f} tok/s"
              + (f", mfu {self.running_mfu*100:.1f}%" if self.running_mfu >= 0 else '')
              + (f", eta {eta/60:.1f} min" if it > 0 else ''))
        self.log_row({'kind': 'train', 'iter': it, 'train_loss': lossf, 'lr': lr})
        if self.run is not None:
            self.run.log({'loss/train': lossf, 'train/lr': lr, 'perf/tok_per_s': self.tokens_per_iter / dt,
                          'perf/ms_per_iter': dt * 1000, **({'perf/mfu': self.running_mfu} if self.running_mfu >= 0 else {})},
                         step=it)

    def finish(self):
        """summary.json: throughput and size, for the study table (not in metrics.jsonl: timing is not reproducible).
        A run stopped by a signal writes none: it is not finished."""
        self.writer.wait()
        if self.master and not self.cfg['eval_only'] and not self.stopped:
            cuda = self.device_type == 'cuda'
            save_json(os.path.join(self.out_dir, 'summary.json'), {
                'params': self.raw_model.param_counts(), 'final': self.last_eval,
                'tok_per_s_median': float(np.median(self.speeds)) if self.speeds else None,
                'device': torch.cuda.get_device_name(self.dev) if cuda else 'cpu', 'world_size': self.world,
                'iter_num': self.iter_num, 'wall_s': round(time.time() - self.t_start, 1),
                'eval_s': round(self.eval_s, 2), 'save_blocked_s': round(self.save_s, 2)})   # the loop's time in evals / in save()
            f = self.last_eval
            print(f"done: {self.iter_num} iters in {time.time() - self.t_start:.0f} s; val {f['val_loss']:.4f} at iter {f['iter']} "
                  f"(hot {f['val_loss_hot']:.4f}, cold {f['val_loss_cold']:.4f}); wrote {self.out_dir}/"
                  f"{{metrics.jsonl, ckpt.pt{', best.pt' if self.cfg['save_best'] else ''}, summary.json}}")
        if self.run is not None:
            self.run.finish(exit_code=128 + self.stopped if self.stopped else None)
        if self.ddp:
            dist.destroy_process_group()

    # -- stops: SIGTERM (a scheduler, a preempted VM), SIGUSR1 (a scheduler's early warning), Ctrl-C -----------

    def catch_stops(self):
        """A stop signal only sets a flag: the loop finishes the step, saves ckpt.pt and ends (a second Ctrl-C quits at once)."""
        def on_signal(signum, frame):
            if self.stop_signal and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum
            if self.ddp:                    # a peer that died leaves this rank blocked in a collective: SIGALRM ends it
                signal.alarm(STOP_GRACE_S)
            if self.master:
                print(f"\n{signal.Signals(signum).name}: stopping after this step, with ckpt.pt saved"
                      + (" (Ctrl-C again quits at once)" if signum == signal.SIGINT else ''), file=sys.stderr, flush=True)
        return {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}

    def stop_requested(self, it):
        """The signal every process agrees to stop on (DDP: a max over ranks at log steps, where the loop syncs anyway)."""
        if not self.ddp:
            return self.stop_signal
        if it % self.cfg['log_interval']:
            return 0
        flag = torch.tensor(self.stop_signal, device=self.dev)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag)

    # -- the step --------------------------------------------------------------------

    def step(self, lr):
        """One iteration: forward/backward over this rank's share of the global micro-steps (in smaller
        micro-batches if these run out of GPU memory), clip, AdamW."""
        cfg, it = self.cfg, self.iter_num
        while True:
            try:
                self.accumulate()
                break
            except torch.cuda.OutOfMemoryError:
                pass                       # handled outside the except: its traceback holds the step's tensors
            self.halve_micro_batch()
        if cfg['grad_clip'] != 0.0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg['grad_clip'])
        self.bad_iter = torch.where((self.bad_iter < 0) & ~torch.isfinite(self.loss_acc), it, self.bad_iter)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if cfg['wk_decay'] or cfg['wk_reset_interval'] or cfg['hot_weight_decay']:
            optim.gate_maintenance(self.raw_model, it, lr, cfg['wk_decay'], cfg['wk_reset_interval'],
                                   cfg['hot_weight_decay'] * variants.ramp(it, cfg['hot_reg_ramp_iters']))

    def accumulate(self):
        """Forward/backward of this rank's micro-steps; the gradients add up in .grad."""
        it = self.iter_num
        for j in range(self.local_G):
            if self.ddp:   # all-reduce gradients only on the last micro-step (nanoGPT)
                self.model.require_backward_grad_sync = j == self.local_G - 1
            x, y, prev = self.next_batch
            with self.autocast:
                _, loss, _ = self.model(x, y, prev=prev, step=self.step_t)
                loss = loss / self.local_G
            # prefetch the next micro-batch while the GPU runs this forward (CUDA kernels are async)
            nxt_it, nxt_j = (it, j + 1) if j + 1 < self.local_G else (it + 1, 0)
            self.next_batch = self.batch(nxt_it, self.rank * self.local_G + nxt_j)
            loss.backward()
            self.loss_acc += loss.detach()

    def halve_micro_batch(self):
        """After an out-of-memory: redo the iteration with micro-batches half as large and twice as many (the
        windows are split-invariant: the same experiment, the same losses)."""
        cfg, B = self.cfg, self.cfg['batch_size']
        if B % 2 or self.ddp:              # DDP: one rank cannot change the split alone
            raise ConfigError(f"out of GPU memory at micro-batch {B}{' under DDP' if self.ddp else ''}; set a smaller "
                              f"--batch_size and a larger --gradient_accumulation_steps (the same global batch)")
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_acc.zero_()
        if self.device_type == 'cuda':
            torch.cuda.empty_cache()
        cfg['batch_size'], cfg['gradient_accumulation_steps'] = B // 2, cfg['gradient_accumulation_steps'] * 2
        self.local_G *= 2
        self.next_batch = self.batch(self.iter_num, self.rank * self.local_G)
        print(f"out of memory at micro-batch {B}: iter {self.iter_num} redone with {B // 2} x "
              f"{cfg['gradient_accumulation_steps']} micro-steps (the same global batch)", flush=True)

    def train(self):
        cfg = self.cfg
        self.tokens_per_iter = cfg['gradient_accumulation_steps'] * cfg['batch_size'] * cfg['block_size']
        self.peak = device_peak_flops(self.dev)
        self.bad_iter = torch.full((), -1, dtype=torch.long, device=self.dev)   # first non-finite loss, kept on device
        self.loss_acc = torch.zeros((), device=self.dev)
        self.step_t = torch.zeros((), dtype=torch.long, device=self.dev)   # the iter as a tensor: no recompile per step
        self.next_batch = self.batch(self.iter_num, self.rank * self.local_G)
        self.t0, self.running_mfu, self.speeds = time.time(), -1.0, []
        self.t_start, self.last_eval, self.eval_s, self.save_s = self.t0, None, 0.0, 0.0
        while True:
            lr = get_lr(self.iter_num, cfg)
            for group in self.optimizer.param_groups:
                group['lr'] = lr
            it, last = self.iter_num, self.iter_num >= cfg['max_iters']
            self.writer.check()            # a failed background write surfaces here, one step after it happened
            t = time.time()
            if (it % cfg['eval_interval'] == 0 or last) and it != self.resumed_at:
                self.evaluate()
            t, self.eval_s = time.time(), self.eval_s + time.time() - t
            saved = it > 0 and it != self.resumed_at and (last or (cfg['ckpt_interval'] and it % cfg['ckpt_interval'] == 0))
            if saved:
                self.save()
            self.save_s += time.time() - t
            if last or (it == 0 and cfg['eval_only']):
                break
            self.stopped = self.stop_requested(it)
            if self.stopped:                # the state after iter it's eval: what a resume at it expects
                if not saved and it != self.resumed_at:
                    self.save()
                break
            self.step_t.fill_(it)
            self.step(lr)
            if it % cfg['log_interval'] == 0:
                self.log_train(lr)
            self.loss_acc.zero_()
            self.iter_num += 1
        self.finish()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
STOP_GRACE_S = 180     # DDP: seconds a stop may take (the step, a checkpoint write) before the process is ended

def main(argv):
    """Train; returns the exit status (0, or 128 + the signal that stopped the run)."""
    cfg = {k: globals()[k] for k in config_keys}
    apply_config(cfg, argv, config_keys)
    trainer = Trainer(cfg)
    if cfg['dry_run']:
        if trainer.master:
            print(json.dumps({'out_dir': cfg['out_dir'], **trainer.footprint()}))
        return 0
    if trainer.finished:
        if trainer.master:
            print(f"{trainer.out_dir} is finished (iter {trainer.iter_num} of --max_iters {cfg['max_iters']}); nothing to do. "
                  f"To train it further, resume with a larger --max_iters.")
        return 0
    previous = trainer.catch_stops()
    try:
        trainer.train()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if trainer.stopped:
        if trainer.master:
            print(f"stopped by {signal.Signals(trainer.stopped).name} at iter {trainer.iter_num}: {trainer.ckpt_path} saved; "
                  f"continue with the same command and --init_from='resume'", file=sys.stderr)
        return 128 + trainer.stopped
    return 0

def exit_now(code):
    """Under torchrun, end without the interpreter's teardown (the DDP models stay referenced: see wrap_ddp).
    Everything is written and fsynced by now."""
    if 'RANK' in os.environ:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

if __name__ == '__main__':
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        print("error: interrupted; the last checkpoint written is kept (resume with --init_from='resume')", file=sys.stderr)
        code = 128 + signal.SIGINT
    except (ConfigError, DataError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except OSError as e:            # a full disk, an out_dir that is a file, ...: say which file and why
        print(f"error: {e.filename or ''}: {e.strerror or e}. Nothing was half-written (temp files, then rename).", file=sys.stderr)
        code = 1
    exit_now(code)
