"""
Train GPT-2 with Engram memory (nanoGPT style).

  python train.py configs/nine_100_400k.py --seed=1
  torchrun --standalone --nproc_per_node=8 train.py configs/hash_500k.py
  python train.py --help              # every config key with its default and meaning

Defaults are the paper's (Table 1, Nine-100/400K). Every eval appends the route-stratified metrics to
out_dir/metrics.jsonl (and wandb), so the flip analysis never depends on kept checkpoints.
"""
import inspect
import json
import math
import os
import shutil
import signal
import sys
import time

PROCESS_T0 = time.time()        # the start-up's clock: imports, data, model, optimizer before the loop

from engramlib import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import ConfigError, apply_config, closest
from engramlib import optim
from engramlib.checkpoint import CKPT_VERSION, CheckpointWriter, load_weights, nonfinite
from engramlib.data import DataError, TokenData, save_json, to_device
from engramlib.fsafe import DirLock, append_line, own_subdir, refuse_shared_dir, remove_stale_temps
from engramlib.metrics import evaluate, wandb_row
from engramlib.offload import HostTables
from engramlib.options import Group, Option, check_values, help_text, merged
from engramlib.provenance import provenance
from engramlib.resume import check_base, check_resume, fine_tune_base, truncate_metrics
from engramlib.system import (COMPILE_MODES, CUDA_GRAPH_MODES, autocast_context, compile_model, device_peak_flops, device_problem,
                              make_deterministic, resolve_device, resolve_dtype, resolve_loss_chunk)
from factory import EXTENSIONS, MODEL_GROUPS, RUN_GROUPS, ModelConfig, build_model, load_checkpoint, load_index
from layers import SDPA_BACKENDS

# -----------------------------------------------------------------------------
# settings: the run's own here, the model's next to its parts (factory.MODEL_GROUPS), the extensions' (factory.RUN_GROUPS).
# Defaults are the paper's (Table 1/2); override with a config file and --key=value (configurator.py).

def check_run(c):
    if c['init_from'] not in ('scratch', 'resume') and not c['init_from'].endswith('.pt'):
        raise ConfigError(f"--init_from must be 'scratch', 'resume' or a checkpoint path (…/ckpt.pt), got {c['init_from']!r}")
    if c['max_iters'] == 0 and not c['eval_only']:
        raise ConfigError("--max_iters=0 trains nothing; pass --eval_only=True to only evaluate")
    unknown = [k for k in c['resume_changes'] if k not in c and k not in ('global_batch', 'data_files')]
    if unknown:
        raise ConfigError(f"--resume_changes names {unknown}, which are neither config keys nor 'global_batch', 'data_files'."
                          f"{closest(unknown[0], list(c))}")

RUN = Group('I/O', dict(
    out_dir=Option('out/nine_100_400k', 'the run dir: config.json, metrics.jsonl, ckpt.pt, summary.json', run_only=True),
    data_dir=Option('data/fineweb_edu', 'a dir written by prepare_fineweb.py', run_only=True),
    eval_interval=Option(250, 'iters between stratified evals (and the last iter)', above=0, run_only=True),
    log_interval=Option(10, 'iters between train-loss lines (the only host sync of the step)', above=0, run_only=True),
    val_windows=Option(400, 'the fixed validation set: the first N windows of val (paper: 100 eval iters x 4)', above=0),
    eval_batch_size=Option(16, 'windows per eval forward (a speed knob: the validation set does not change)', above=0, run_only=True),
    eval_only=Option(False, 'evaluate the initial (or resumed) model once and stop', run_only=True),
    ckpt_interval=Option(1000, 'iters between saves of ckpt.pt (exact resume), also at the end and on a stop signal; 0 = end '
                         'only (1000: a paper-scale write outlasts 250 GPU iters)', at_least=0, run_only=True),
    save_best=Option(False, 'also keep best.pt: the weights of the eval with the lowest val_loss', run_only=True),
    save_snapshots=Option(False, 'weights-only snapshot at every eval (for key-stability analyses)', run_only=True),
    init_from=Option('scratch', "'scratch' | 'resume' (from out_dir/ckpt.pt) | path/to/ckpt.pt (fine-tune its model)", run_only=True),
    overwrite=Option(False, 'True: a run that does not resume may replace the run out_dir holds (else it refuses)', run_only=True),
    final_ckpt=Option('full', "at the end, ckpt.pt keeps: 'full' (resumable further) | 'weights' (1/3 of the size: study.py's "
                      "default)", choices=('full', 'weights'), run_only=True),
    dry_run=Option(False, "check the config and data dir, print the run's footprint (parameters, disk) as JSON, write nothing",
                   run_only=True),
), check=check_run)

WANDB = Group('wandb', dict(
    wandb_log=Option(False, 'log to wandb (study.py and quickstart.sh turn it on; offline without a login)', run_only=True),
    wandb_project=Option('engram-nine', 'wandb project name', run_only=True),
    wandb_group=Option('', 'runs of one config across seeds (default: none)', run_only=True),
    wandb_run_name=Option('', "default: the out_dir's name", run_only=True),
))

BATCH = Group('data: the experiment is the global batch (batch_size x gradient_accumulation_steps windows of block_size); '
              'how it is split into micro-batches and processes is a speed knob only (the same windows either way)', dict(
    batch_size=Option(16, 'windows per micro-batch (lower it if memory runs out; raise accumulation to match)', above=0,
                      run_only=True),
    gradient_accumulation_steps=Option(1, 'micro-batches per iter, across all DDP processes (paper: 16 x 1024 = 4 x 4 = 16 x 1)',
                                       above=0, run_only=True),
    seed=Option(0, 'model init and training windows', at_least=0, below=2**63),
    hash_seed_from_seed=Option(False, 'True: engram_hash_seed = seed, so each seed also draws its own collision pattern'),
))

def check_optim(c):
    if c['decay_lr'] and c['warmup_iters'] > c['lr_decay_iters']:
        raise ConfigError(f"--warmup_iters {c['warmup_iters']} > --lr_decay_iters {c['lr_decay_iters']}: no decay would happen")
    if c['min_lr'] > c['learning_rate']:
        raise ConfigError(f"--min_lr {c['min_lr']} > --learning_rate {c['learning_rate']}")

OPTIM = Group('AdamW (paper Table 1)', dict(
    learning_rate=Option(6e-4, 'peak learning rate', above=0),
    max_iters=Option(5000, 'training iterations', at_least=0, run_only=True),
    weight_decay=Option(1e-1, 'decoupled weight decay of 2-D weights (tables included)', at_least=0),
    beta1=Option(0.9, 'AdamW beta1 (first-moment decay)', above=0, below=1),
    beta2=Option(0.95, 'AdamW beta2 (second-moment decay; paper 0.95)', above=0, below=1),
    grad_clip=Option(1.0, 'global gradient-norm clip (0 = off)', at_least=0),
    table_optimizer=Option('adamw', "'adamw' (paper: dense, every row every step) | 'rowwise' (lazy, only rows read)",
                           choices=('adamw', 'rowwise')),
    decay_lr=Option(True, 'linear warmup then cosine decay; False = constant learning_rate'),
    warmup_iters=Option(100, 'linear warmup iters', at_least=0),
    lr_decay_iters=Option(5000, 'the cosine reaches min_lr here', at_least=0),
    min_lr=Option(6e-5, 'the end of the cosine', at_least=0),
), check=check_optim)

def check_system(c):
    if not (c['device'] in ('auto', 'cpu', 'cuda') or c['device'].startswith('cuda:')):
        raise ConfigError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {c['device']!r}")
    if c['loss_chunk'] > 0 and c['loss_chunk'] % 8:
        raise ConfigError(f"--loss_chunk {c['loss_chunk']} is not a multiple of 8 (row blocks of 8k rows multiply as the whole "
                          f"matrix does, so the losses stay the plain head's)")
    if c['engram_tables'] == 'host':
        check_host_tables(c)
    if c['compile_mode'] != 'default' and not c['compile']:
        raise ConfigError(f"--compile_mode='{c['compile_mode']}' compiles the model, but --compile=False: drop one of them")
    if c['dtype'] == 'float16':
        raise ConfigError("--dtype='float16' needs loss scaling (a GradScaler), which this loop does not do: its "
                          "small gradients would flush to zero. Use 'bfloat16' (A100/H100, the default on CUDA) or 'float32'.")

def check_host_tables(c):
    """Host tables stage the rows each step reads (engramlib/offload.py): what reads or writes other rows, or keeps the
    table's state elsewhere, is refused."""
    if c['memory'] == 'none':
        raise ConfigError("--engram_tables='host' moves the memory tables, but --memory='none' has none")
    if c['table_optimizer'] != 'rowwise':
        raise ConfigError("--engram_tables='host' updates the rows each step reads: set --table_optimizer='rowwise' "
                          "(the paper's dense AdamW updates every row every step)")
    if int(os.environ.get('WORLD_SIZE', 1)) > 1:
        raise ConfigError("--engram_tables='host' keeps one host copy of the tables per process, not shared between "
                          "DDP ranks: run one process, or --engram_tables='device'")
    if c['compile_mode'] in CUDA_GRAPH_MODES:
        raise ConfigError(f"--compile_mode='{c['compile_mode']}' replays CUDA graphs, which would read the staged rows at "
                          f"their addresses when captured; with --engram_tables='host' use 'default' or "
                          f"'max-autotune-no-cudagraphs'")
    on = [k for e in EXTENSIONS for k in e.host_table_conflicts(c)]
    if on:
        raise ConfigError(f"{', '.join('--' + k for k in on)} read or decay table rows beyond each step's own reads; "
                          f"not with --engram_tables='host'")

SYSTEM = Group('system', dict(
    backend=Option('nccl', 'DDP backend on CUDA; CPU always uses gloo', run_only=True),
    device=Option('auto', "'auto' (cuda if available, else cpu) | 'cpu' | 'cuda' | 'cuda:1' ...", run_only=True),
    dtype=Option('auto', "'auto' (bfloat16 on CUDA, float32 on CPU) | 'float32' | 'bfloat16' ('float16' is refused: no GradScaler)",
                 choices=('auto', 'float32', 'bfloat16', 'float16'), run_only=True),
    compile=Option(True, 'torch.compile (CUDA only)', run_only=True),
    compile_mode=Option('default', "torch.compile's mode; opt-in, compiling for minutes: 'max-autotune-no-cudagraphs' "
                        "(autotuned kernels) | 'max-autotune' / 'reduce-overhead' (+ CUDA graphs: not with host tables, and "
                        "an out-of-memory step is not redone in smaller micro-batches)", choices=COMPILE_MODES, run_only=True),
    sdpa_backend=Option('auto', "attention's kernel: 'auto' (PyTorch's choice: flash on CUDA) | 'flash' | 'cudnn' | "
                        "'efficient' (CUDA only) | 'math'", choices=tuple(SDPA_BACKENDS), run_only=True),
    loss_chunk=Option(-1, 'rows of logits at a time in the loss (chunked linear + cross-entropy, never the whole logits: '
                      'engramlib/linear_ce.py); 0 = the plain head; -1 = auto: 4096 on CUDA, 0 on CPU', at_least=-1, run_only=True),
    deterministic=Option(False, 'bit-reproducible kernels (a resumed CUDA run equals the uninterrupted one; slower): '
                         "deterministic algorithms and cuBLAS's fixed workspace", run_only=True),
    resume_changes=Option((), "experiment keys a resume may change on purpose, e.g. ('learning_rate',); 'global_batch'",
                          run_only=True),
    engram_tables=Option('device', "'device' (paper: the memory tables on the model's device) | 'host': in host memory "
                         "with their row-wise AdamW state, each step's rows prefetched (engramlib/offload.py; --table_optimizer="
                         "'rowwise')", choices=('device', 'host'), run_only=True),
), check=check_system)

SETTINGS = [RUN, WANDB, BATCH, *MODEL_GROUPS[1:], *RUN_GROUPS, OPTIM, SYSTEM]   # MODEL_GROUPS[0]: vocab_size, from the data
DEFAULTS = {k: o.default for k, o in merged(SETTINGS).items()}
config_keys = list(DEFAULTS)

def default_config():
    """Every setting at its default: the dict a config file and --key=value overrides update."""
    return dict(DEFAULTS)

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
    keys = ModelConfig.__dataclass_fields__
    args = {k: cfg[k] for k in keys if k in cfg}
    args['vocab_size'] = vocab_size
    if cfg.get('hash_seed_from_seed'):
        args['engram_hash_seed'] = cfg['seed']
    return ModelConfig(**args)

def validate_config(cfg):
    """Every value in range and every combination able to train something (each part's own checks), or ConfigError."""
    check_values(SETTINGS, cfg)

# the keys a resume may change (run_only settings); the others make another experiment, unless resume_changes lists them
RUN_KEYS = tuple(k for k, o in merged(SETTINGS).items() if o.run_only)

# -----------------------------------------------------------------------------

def resolve_system(cfg):
    """'auto' device and dtype: CUDA with bf16 where there is one, else CPU with float32."""
    cfg['device'] = resolve_device(cfg['device'])
    if device_problem(cfg['device']):
        raise ConfigError(device_problem(cfg['device']))
    if not cfg['device'].startswith('cuda'):
        cfg['backend'] = 'gloo'             # what DDP uses on CPU: config.json says what ran
        if cfg['sdpa_backend'] in ('cudnn', 'efficient'):
            raise ConfigError(f"--sdpa_backend='{cfg['sdpa_backend']}' is a CUDA kernel; on {cfg['device']} use 'auto', "
                              f"'flash' or 'math'")
    cfg['dtype'] = resolve_dtype(cfg['dtype'], cfg['device'])

def init_distributed(cfg):
    """(ddp, rank, world, device) from torchrun's environment; gloo on CPU."""
    dev = cfg['device']
    if int(os.environ.get('RANK', -1)) == -1:
        return False, 0, 1, dev
    dist.init_process_group(backend=cfg['backend'])
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


RUN_FILES = ('summary.json', 'ckpt.pt', 'best.pt', 'metrics.jsonl', 'snapshots', 'config.json')   # what a run writes

def holds_work(path):
    """Whether a run file holds something a fresh start would lose: not config.json (each start rewrites it),
    not an empty metrics file or an empty snapshots/ (left by a run killed before its first row or snapshot)."""
    if os.path.basename(path) == 'config.json' or not os.path.lexists(path):
        return False
    if os.path.islink(path):
        return True
    return bool(os.listdir(path)) if os.path.isdir(path) else os.path.getsize(path) > 0

class RunDir:
    """out_dir as a run writes it (rank 0; the other ranks' RunDir writes nothing): one writer (its lock),
    config.json, metrics.jsonl, summary.json at a finished end, and the wandb run beside them."""

    def __init__(self, out_dir, master):
        self.path, self.master, self.wandb = out_dir, master, None
        self.metrics = os.path.join(out_dir, 'metrics.jsonl')
        if master:
            refuse_shared_dir(out_dir, '--out_dir', data_dirs_too=True)
        self.lock = DirLock(out_dir) if master else None

    def open(self, resumed, overwrite, iter_num, record):
        """Make the dir this run's: temps of killed writes removed, the files of the run it held cleared (or
        refused), metrics.jsonl cut back to the checkpoint on resume, config.json (`record`) written."""
        if remove_stale_temps(self.path, depth=1):        # the run dir and its snapshots/
            print(f"removed the temp files of writes killed in {self.path}")
        self.clear(resumed, overwrite)
        if resumed:
            truncate_metrics(self.metrics, iter_num)
        save_json(os.path.join(self.path, 'config.json'), record)     # what reports group runs by

    def clear(self, resumed, overwrite):
        """What the run dir holds stops being true once this run starts: summary.json first (a run cut short
        must never look finished); a fresh run replaces a run only when told (--overwrite=True)."""
        summary = os.path.join(self.path, 'summary.json')
        if resumed:
            if os.path.exists(summary):
                os.remove(summary)          # resumed to train further: finished again only at its new end
            return
        held = [f for f in RUN_FILES if holds_work(os.path.join(self.path, f))]
        if held and not overwrite:
            again = ("Resume it with --init_from='resume'" if 'ckpt.pt' in held else
                     "It has no checkpoint to resume: pass --overwrite=True to start it again")
            raise DataError(f"{self.path} holds a run ({', '.join(held)}); a fresh run would destroy it. {again}, "
                            f"choose another --out_dir, or pass --overwrite=True to replace it.")
        for f in RUN_FILES:
            p = os.path.join(self.path, f)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.remove(p)

    def start_wandb(self, cfg, params, run_id):
        """The wandb run (resumed when run_id, the checkpoint's, is given); its id, or None without wandb."""
        try:
            import wandb
        except ImportError:
            print("note: wandb is not installed here; logging to metrics.jsonl only (pip install wandb for dashboards)")
            return None
        self.wandb = wandb.init(project=cfg['wandb_project'], group=cfg['wandb_group'] or None,
                                name=cfg['wandb_run_name'] or os.path.basename(self.path.rstrip('/')),
                                config={**cfg, 'params': params}, id=run_id, resume='allow')
        return self.wandb.id

    def row(self, row):
        append_line(self.metrics, json.dumps(row, sort_keys=True) + '\n')

    def log(self, values, step):
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def summary(self, values):
        save_json(os.path.join(self.path, 'summary.json'), values)

    def close(self, stopped):
        if self.wandb is not None:
            self.wandb.finish(exit_code=128 + stopped if stopped else None)


class Run:
    """A run before its first step: the settings checked, the processes, the data, the model (from scratch,
    the run's checkpoint, or another run's to fine-tune), its optimizer and the counters it starts from. A
    finished run builds no model, a dry run only counts its parameters (footprint). Trainer runs it."""

    def __init__(self, cfg):
        self.cfg = cfg
        fine_tune = cfg['init_from'] not in ('scratch', 'resume') and cfg['init_from'].endswith('.pt')
        self.base, self.base_changed = None, []
        if fine_tune:
            base = load_checkpoint(cfg['init_from'], hint="--init_from takes a checkpoint path, 'scratch' or 'resume'.")
            self.base, self.base_changed = base, fine_tune_base(cfg, base)
        validate_config(cfg)
        resolve_system(cfg)
        self.ddp, self.rank, self.world, self.dev = init_distributed(cfg)
        self.master = self.rank == 0
        if cfg['gradient_accumulation_steps'] % self.world:
            self.split_for_world()
        self.local_G = cfg['gradient_accumulation_steps'] // self.world
        self.device_type = 'cuda' if self.dev.startswith('cuda') else 'cpu'
        self.autocast = autocast_context(self.device_type, cfg['dtype'])
        if self.device_type == 'cuda':
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg['deterministic']:
            make_deterministic()            # before the model's first matmul: cuBLAS reads its workspace setting once
        torch.manual_seed(cfg['seed'])
        self.out_dir = cfg['out_dir']
        self.ckpt_path = os.path.join(self.out_dir, 'ckpt.pt')
        self.setup_data()
        self.setup_model()

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
        base = self.base
        self.tables = None          # engram_tables='host': offload.HostTables
        if self.base_changed and self.master:
            print(f"fine-tuning {cfg['init_from']}: its model settings apply ({', '.join(self.base_changed)})")
        self.mcfg = model_config(cfg, -(-vocab // 64) * 64)
        index, self.signature = load_index(cfg['data_dir'], self.data.meta, self.mcfg)
        if base is not None:
            check_base(base, self.signature, self.mcfg.memory, cfg['init_from'])
        self.iter_num, self.best_val_loss, self.wandb_id = 0, 1e9, None
        ckpt = self.resume_checkpoint() if cfg['init_from'] == 'resume' else None
        self.finished = ckpt is not None and self.iter_num >= cfg['max_iters'] and not cfg['eval_only']
        if self.finished:                   # nothing to build: main() says so and stops
            return
        if ckpt is not None and 'optimizer' not in ckpt:
            raise DataError(f"{self.ckpt_path} holds the weights only (a finished run saved with final_ckpt='weights'), so "
                            f"training cannot resume from it. Evaluate or sample it, or retrain with --final_ckpt='full'.")
        self.check_memory(index)
        if cfg['dry_run']:
            return
        noise = next((n for e in EXTENSIONS if (n := e.noise(cfg)) is not None), None)
        self.raw_model = build_model(self.mcfg, index, noise)
        self.raw_model.loss_chunk = resolve_loss_chunk(cfg['loss_chunk'], self.device_type)
        self.raw_model.sdpa_backend = cfg['sdpa_backend']
        if ckpt is not None:
            load_weights(self.raw_model, ckpt['model'], f"checkpoint {self.ckpt_path}")
        if base is not None:
            self.load_base(base)
        self.tables = HostTables(self.raw_model, pin=self.device_type == 'cuda') if cfg['engram_tables'] == 'host' else None
        self.raw_model.to(self.dev)
        self.optimizer = optim.configure_optimizers(self.raw_model, cfg['weight_decay'], cfg['learning_rate'],
                                                    (cfg['beta1'], cfg['beta2']), self.device_type, cfg['table_optimizer'])
        if ckpt is not None:
            if self.tables is not None:
                self.tables.load_optimizer_state(self.optimizer, ckpt['optimizer'])
            else:
                self.optimizer.load_state_dict(ckpt['optimizer'])
            torch.set_rng_state(ckpt['rng']['torch'])
            if self.device_type == 'cuda' and ckpt['rng'].get('cuda') is not None:
                torch.cuda.set_rng_state(ckpt['rng']['cuda'])
        self.resumed_at = self.iter_num if ckpt is not None else None
        self.model = self.raw_model
        if cfg['compile'] and self.device_type == 'cuda':
            self.model = compile_model(self.model, cfg['compile_mode'])
        self.eval_model = self.model       # compiled too (a second graph for eval mode), not DDP-wrapped
        if self.ddp:
            self.model = wrap_ddp(self.model, self.device_type)

    def resume_checkpoint(self):
        """The run's own checkpoint, checked against this run's data and experiment; its counters become the run's."""
        ckpt = load_checkpoint(self.ckpt_path)
        check_resume(ckpt, self.cfg, self.signature, self.data.files_sha256(), os.path.join(self.out_dir, 'metrics.jsonl'),
                     self.ckpt_path, RUN_KEYS, DEFAULTS)
        self.iter_num, self.best_val_loss, self.wandb_id = ckpt['iter_num'], ckpt.get('best_val_loss', 1e9), ckpt.get('wandb_id')
        return ckpt

    def load_base(self, base):
        """Fine-tuning: the base run's weights (as the extensions name them: adapters wrap layers)."""
        state, missing = base['model'], []
        for e in EXTENSIONS:
            state, more = e.base_state(state, self.raw_model)
            missing += more
        load_weights(self.raw_model, state, f"checkpoint {self.cfg['init_from']}", allow_missing=missing)
        for e in EXTENSIONS:
            e.after_base(self.raw_model)

    def check_memory(self, index):
        """Refuse a run that cannot fit before allocating it (a typo in block_size or n_embd would otherwise take
        all memory), with the estimate: fp32 weights, grads and two AdamW moments (16 B per parameter, counted on
        the meta device) plus, on CPU, the activations of a micro-batch (roughly). On CUDA the activations are
        the micro-batch fallback's job. Host tables (weights and two moments, 12 B per parameter) count as host memory."""
        c, m = self.cfg, self.mcfg
        with torch.device('meta'):
            model = build_model(m, index, shapes_only=True)
        n = self.n_params = sum(p.numel() for p in model.parameters())
        on_host = model.memory.table.weight.numel() if c['engram_tables'] == 'host' else 0
        host, state = 12 * on_host, 16 * (n - on_host)
        act = c['batch_size'] * c['block_size'] * (m.n_layer * m.n_embd * 34 + m.vocab_size * 8)
        if host and host > available_ram():
            raise ConfigError(f"the host tables need about {host / 2**30:,.1f} GiB of host memory (weights and AdamW "
                              f"moments) but {available_ram() / 2**30:,.1f} GiB are available. Lower --table_size.")
        if self.device_type == 'cuda':
            need, have = state, torch.cuda.get_device_properties(self.dev).total_memory
        else:
            need, have = state + act + host, available_ram()
        if need > have:
            raise ConfigError(f"this run needs about {need / 2**30:,.1f} GiB ({n:,} parameters: {state / 2**30:,.1f} GiB of "
                              f"weights, grads and AdamW moments" + ('' if self.device_type == 'cuda' else
                              f"; {act / 2**30:,.1f} GiB of activations per micro-batch") +
                              (f"; host tables {host / 2**30:,.1f} GiB" if host else '') + f") but {self.dev} has "
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


class Trainer:
    """The loop over a Run: the step, eval, log and save (to its RunDir and ckpt.pt), and the stops."""

    def __init__(self, run):
        self.run, self.cfg = run, run.cfg
        self.iter_num, self.best_val_loss, self.wandb_id, self.local_G = run.iter_num, run.best_val_loss, run.wandb_id, run.local_G
        self.stop_signal, self.stopped = 0, 0     # the signal asked to stop, the one the run stopped on
        self.writer = CheckpointWriter()
        self.setup_logs()

    def setup_logs(self):
        """The run dir made this run's (RunDir.open), what the run is printed, and the wandb run."""
        cfg = self.cfg
        self.dir = RunDir(self.run.out_dir, self.run.master)
        if not self.run.master:
            return
        self.dir.open(self.run.resumed_at is not None, cfg['overwrite'], self.iter_num,
                      {**cfg, 'data_signature': self.run.signature, 'provenance': provenance(self.run.dev, self.run.world),
                       'not_default': sorted(k for k in DEFAULTS if cfg[k] != DEFAULTS[k])})   # the keys a reader looks at first
        if cfg['decay_lr'] and cfg['max_iters'] < cfg['lr_decay_iters']:
            print(f"note: --max_iters {cfg['max_iters']} < lr_decay_iters {cfg['lr_decay_iters']}: the cosine stops part way "
                  f"(lr {get_lr(cfg['max_iters'], cfg):.2e} at the end, not {cfg['min_lr']:.0e}); pass --lr_decay_iters="
                  f"{cfg['max_iters']} to decay fully")
        pc = self.run.raw_model.param_counts()
        t = self.run.data.meta['tokens']
        B, G, T = cfg['batch_size'], cfg['gradient_accumulation_steps'], cfg['block_size']
        print(f"run {self.run.out_dir}: data {cfg['data_dir']} ({t['tokenizer']}, {t['n_train']:,} train tokens), "
              f"{self.run.dev} {cfg['dtype']}, {cfg['max_iters']} iters of {B * G} x {T} tokens "
              f"({G} micro-batch{'es' if G > 1 else ''} of {B}{f' over {self.run.world} processes' if self.run.ddp else ''})")
        if self.run.resumed_at is not None:
            print(f"resumed from {cfg['out_dir']}/ckpt.pt at iter {self.run.resumed_at}: continuing to {cfg['max_iters']}")
        print(f"params: backbone {pc['backbone']:,} | tables {pc['tables']:,} | gate {pc['gate']:,} | "
              + (f"adapters {pc['adapter']:,} (the only ones trained) | " if pc.get('adapter') else '') + f"total {pc['total']:,}")
        if cfg['wandb_log']:
            self.wandb_id = self.dir.start_wandb(cfg, pc, self.wandb_id)

    # -- helpers -------------------------------------------------------------------

    def all_reduce(self, v):
        if self.run.ddp:
            dist.all_reduce(v)
        return v

    def stop_non_finite(self, it):
        raise FloatingPointError(f"non-finite loss at iter {it}; stopped. The last good checkpoint {self.run.ckpt_path} is untouched.")

    def batch(self, it, micro, device=None):
        """Global micro-batch `micro` of iteration `it`: global samples [micro*B, (micro+1)*B)."""
        B, T = self.cfg['batch_size'], self.cfg['block_size']
        starts = self.run.data.train_starts(self.cfg['seed'], it, range(micro * B, (micro + 1) * B), T)
        return to_device(self.run.data.windows('train', starts, T), device or self.run.dev)

    def prefetch_rows(self, it):
        """Host tables: start the copy of iteration it's table rows (its tokens on the CPU give them)."""
        G0 = self.run.rank * self.local_G
        windows = [self.batch(it, G0 + j, 'cpu') for j in range(self.local_G)]
        tables = self.run.tables
        tables.prefetch(tables.step_rows([(x, prev) for x, _, prev in windows]), torch.device(self.run.dev))

    # -- eval / log / save ---------------------------------------------------------

    def evaluate(self):
        """Stratified metrics on the fixed validation windows: printed, logged, and a checkpoint saved."""
        cfg, it = self.cfg, self.iter_num
        r = self.run
        if r.tables is not None:            # the table as the eval reads it, and as best.pt / snapshots save it
            r.tables.sync()
        m = evaluate(r.eval_model, r.data, r.val_starts, cfg['eval_batch_size'], r.dev, r.autocast, r.orders, r.rank, r.world,
                     self.all_reduce)
        if int(self.bad_iter) >= 0 or not math.isfinite(m['val_loss']):
            self.stop_non_finite(int(self.bad_iter) if int(self.bad_iter) >= 0 else it)
        if not self.run.master:
            return
        print(f"eval {it}: val {m['val_loss']:.4f} | hot {m['val_loss_hot']:.4f} cold {m['val_loss_cold']:.4f} "
              f"delta {m['hot_cold_delta']:+.4f} | alpha hot {m.get('alpha_hot', float('nan')):.3f} "
              f"cold {m.get('alpha_cold', float('nan')):.3f} | hot share {m['hot_share']:.3f}")
        self.dir.row({'kind': 'eval', 'iter': it, **m})
        self.last_eval = {'iter': it, **{k: m[k] for k in ('val_loss', 'val_loss_hot', 'val_loss_cold', 'hot_cold_delta')}}
        self.dir.log(wandb_row(m), it)
        if m['val_loss'] < self.best_val_loss:
            self.best_val_loss = m['val_loss']
            if cfg['save_best']:
                self.check_finite('best.pt')
                self.writer.save(os.path.join(self.run.out_dir, 'best.pt'), self.weights(val_loss=m['val_loss']))
        if cfg['save_snapshots']:
            self.writer.save(os.path.join(own_subdir(self.run.out_dir, 'snapshots'), f'iter_{it:06d}.pt'), self.weights())

    def weights(self, **extra):
        """Weights only, with what eval needs to rebuild the model (best.pt, snapshots)."""
        return {'format_version': CKPT_VERSION, 'iter_num': self.iter_num, 'model': self.run.raw_model.state_dict(),
                'model_args': vars(self.run.mcfg), 'config': self.cfg, 'data_signature': self.run.signature,
                'data_files': self.run.data.files_sha256(), **extra}

    def check_finite(self, what):
        """Never save NaN/inf: "the last good checkpoint" must stay true."""
        tables = self.run.tables
        named = list(self.run.raw_model.named_parameters()) + [
            (f'optimizer state {k} of param {i}', v) for i, st in enumerate(self.run.optimizer.state.values())
            for k, v in st.items() if isinstance(v, torch.Tensor) and v.dim() > 0] + ([
            ('host table', tables.table.weight), ('host table exp_avg', tables.exp_avg),
            ('host table exp_avg_sq', tables.exp_avg_sq)] if tables else [])
        bad = nonfinite(named)
        if bad:
            raise FloatingPointError(f"non-finite values in {', '.join(bad[:3])} at iter {self.iter_num}; {what} not saved. "
                                     f"The last good checkpoint {self.run.ckpt_path} is untouched.")

    def save(self):
        """ckpt.pt: everything an exact resume needs, written in the background (CheckpointWriter); at the end
        with final_ckpt='weights', the weights only (a finished run needs no AdamW moments to be evaluated)."""
        cuda = self.run.device_type == 'cuda'
        if self.run.tables is not None:
            self.run.tables.sync()
        self.check_finite(self.run.ckpt_path)
        self.run.data.check_unchanged()
        if not self.run.master:                 # the ranks hold the same state: one writer (rank 0)
            return
        if self.iter_num >= self.cfg['max_iters'] and self.cfg['final_ckpt'] == 'weights':
            self.writer.save(self.run.ckpt_path, self.weights())
            return
        tables = self.run.tables
        self.writer.save(self.run.ckpt_path, {
            **self.weights(), 'best_val_loss': self.best_val_loss,
            'optimizer': tables.optimizer_state(self.run.optimizer) if tables else self.run.optimizer.state_dict(),
            'wandb_id': self.wandb_id,
            'rng': {'torch': torch.get_rng_state(), 'cuda': torch.cuda.get_rng_state() if cuda else None}})

    def log_train(self, lr):
        """Every log_interval: the loss (the only host sync of the step), speed and MFU."""
        cfg, it = self.cfg, self.iter_num
        lossf = float(self.all_reduce(self.loss_acc.clone())) / self.run.world
        if int(self.bad_iter) >= 0:
            self.stop_non_finite(int(self.bad_iter))
        t1 = time.time()
        dt, self.t0 = (t1 - self.t0) / (cfg['log_interval'] if it > 0 else 1), t1
        if it > 0:
            self.speeds.append(self.tokens_per_iter / dt)
        if not self.run.master:
            return
        mfu = self.run.raw_model.estimate_mfu(self.tokens_per_iter, dt, self.peak)
        if it >= 5 and math.isfinite(mfu):
            self.running_mfu = mfu if self.running_mfu < 0 else 0.9 * self.running_mfu + 0.1 * mfu
        eta = (self.cfg['max_iters'] - it) * dt
        print(f"iter {it}: loss {lossf:.4f}, lr {lr:.2e}, {dt*1000:.1f}ms, {self.tokens_per_iter/dt:,.0f} tok/s"
              + (f", mfu {self.running_mfu*100:.1f}%" if self.running_mfu >= 0 else '')
              + (f", eta {eta/60:.1f} min" if it > 0 else ''))
        self.dir.row({'kind': 'train', 'iter': it, 'train_loss': lossf, 'lr': lr})
        self.dir.log({'loss/train': lossf, 'train/lr': lr, 'perf/tok_per_s': self.tokens_per_iter / dt,
                      'perf/ms_per_iter': dt * 1000, **({'perf/mfu': self.running_mfu} if self.running_mfu >= 0 else {})}, it)

    def finish(self):
        """summary.json: throughput and size, for the study table (not in metrics.jsonl: timing is not reproducible).
        A run stopped by a signal writes none: it is not finished."""
        t = time.time()
        self.writer.wait()                      # the final checkpoint's write: part of the run's time in saves
        final_wait = time.time() - t
        if self.run.master and not self.cfg['eval_only'] and not self.stopped:
            cuda = self.run.device_type == 'cuda'
            self.dir.summary({
                'params': self.run.raw_model.param_counts(), 'final': self.last_eval,
                'tok_per_s_median': float(np.median(self.speeds)) if self.speeds else None,
                'device': torch.cuda.get_device_name(self.run.dev) if cuda else 'cpu', 'world_size': self.run.world,
                'iter_num': self.iter_num, 'wall_s': round(time.time() - self.t_start, 1),
                'eval_s': round(self.eval_s, 2), 'save_blocked_s': round(self.save_s, 2),   # the loop's time in evals / in save()
                'eval_times_s': [round(x, 3) for x in self.eval_times], 'save_blocked_times_s': [round(x, 3) for x in self.save_times],
                'final_write_wait_s': round(final_wait, 3), 'startup_s': round(self.t_start - PROCESS_T0, 2),
                **({'host_tables': self.run.tables.counters} if self.run.tables else {})})
            f = self.last_eval
            print(f"done: {self.iter_num} iters in {time.time() - self.t_start:.0f} s; val {f['val_loss']:.4f} at iter {f['iter']} "
                  f"(hot {f['val_loss_hot']:.4f}, cold {f['val_loss_cold']:.4f}); wrote {self.run.out_dir}/"
                  f"{{metrics.jsonl, ckpt.pt{', best.pt' if self.cfg['save_best'] else ''}, summary.json}}")
        self.dir.close(self.stopped)
        if self.run.ddp:
            dist.destroy_process_group()

    # -- stops: SIGTERM (a scheduler, a preempted VM), SIGUSR1 (a scheduler's early warning), Ctrl-C -----------

    def catch_stops(self):
        """A stop signal only sets a flag: the loop finishes the step, saves ckpt.pt and ends (a second Ctrl-C quits at once)."""
        def on_signal(signum, frame):
            if self.stop_signal and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum
            if self.run.ddp:                    # a peer that died leaves this rank blocked in a collective: SIGALRM ends it
                signal.alarm(STOP_GRACE_S)
            if self.run.master:
                print(f"\n{signal.Signals(signum).name}: stopping after this step, with ckpt.pt saved"
                      + (" (Ctrl-C again quits at once)" if signum == signal.SIGINT else ''), file=sys.stderr, flush=True)
        return {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}

    def stop_requested(self, it):
        """The signal every process agrees to stop on (DDP: a max over ranks at log steps, where the loop syncs anyway)."""
        if not self.run.ddp:
            return self.stop_signal
        if it % self.cfg['log_interval']:
            return 0
        flag = torch.tensor(self.stop_signal, device=self.run.dev)
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
            self.clip(cfg['grad_clip'])
        self.bad_iter = torch.where((self.bad_iter < 0) & ~torch.isfinite(self.loss_acc), it, self.bad_iter)
        self.run.optimizer.step()
        self.run.optimizer.zero_grad(set_to_none=True)
        if self.run.tables is not None:          # the step's rows updated and written back, the next step's staged
            self.run.tables.update(lr, cfg['weight_decay'], (cfg['beta1'], cfg['beta2']))
            self.run.tables.advance(torch.device(self.run.dev))
        for e in EXTENSIONS:
            e.after_step(self.run.raw_model, it, lr, cfg)

    def clip(self, max_norm):
        """The global gradient-norm clip; with row-wise tables (on the device or in host memory) the table counts
        through its updated rows (optim.clip_rowwise), so both give the same norm."""
        model, tables = self.run.raw_model, self.run.tables
        if tables is not None:
            optim.clip_rowwise(model.parameters(), tables.table.staged, max_norm)
        elif self.cfg['table_optimizer'] == 'rowwise' and model.memory.table.weight.grad is not None:
            table = model.memory.table.weight
            optim.clip_rowwise([p for p in model.parameters() if p is not table], table, max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(self.run.model.parameters(), max_norm)

    def accumulate(self):
        """Forward/backward of this rank's micro-steps; the gradients add up in .grad."""
        it = self.iter_num
        for j in range(self.local_G):
            if self.run.ddp:   # all-reduce gradients only on the last micro-step (nanoGPT)
                self.run.model.require_backward_grad_sync = j == self.local_G - 1
            x, y, prev = self.next_batch
            if self.cfg['compile_mode'] in CUDA_GRAPH_MODES:   # the graphs' outputs of the last micro-step are consumed
                torch.compiler.cudagraph_mark_step_begin()
            with self.run.autocast:
                _, loss, _ = self.run.model(x, y, prev=prev, step=self.step_t)
                loss = loss / self.local_G
            # prefetch the next micro-batch while the GPU runs this forward (CUDA kernels are async)
            nxt_it, nxt_j = (it, j + 1) if j + 1 < self.local_G else (it + 1, 0)
            self.next_batch = self.batch(nxt_it, self.run.rank * self.local_G + nxt_j)
            loss.backward()
            self.loss_acc += loss.detach()
        if self.run.tables is not None:   # the next step's rows, while the GPU works through this step's queued kernels
            self.prefetch_rows(it + 1)

    def halve_micro_batch(self):
        """After an out-of-memory: redo the iteration with micro-batches half as large and twice as many (the
        windows are split-invariant: the same experiment, the same losses)."""
        cfg, B = self.cfg, self.cfg['batch_size']
        graphs = cfg['compile_mode'] in CUDA_GRAPH_MODES     # their captured graphs keep their memory pool
        if B % 2 or self.run.ddp or graphs:    # DDP: one rank cannot change the split alone
            why = ' under DDP' if self.run.ddp else f" with --compile_mode='{cfg['compile_mode']}'" if graphs else ''
            raise ConfigError(f"out of GPU memory at micro-batch {B}{why}; set a smaller --batch_size and a larger "
                              f"--gradient_accumulation_steps (the same global batch)")
        self.run.optimizer.zero_grad(set_to_none=True)
        if self.run.tables is not None:
            self.run.tables.table.staged.grad = None
        self.loss_acc.zero_()
        if self.run.device_type == 'cuda':
            torch.cuda.empty_cache()
        cfg['batch_size'], cfg['gradient_accumulation_steps'] = B // 2, cfg['gradient_accumulation_steps'] * 2
        self.local_G *= 2
        self.next_batch = self.batch(self.iter_num, self.run.rank * self.local_G)
        print(f"out of memory at micro-batch {B}: iter {self.iter_num} redone with {B // 2} x "
              f"{cfg['gradient_accumulation_steps']} micro-steps (the same global batch)", flush=True)

    def train(self):
        cfg = self.cfg
        self.tokens_per_iter = cfg['gradient_accumulation_steps'] * cfg['batch_size'] * cfg['block_size']
        self.peak = device_peak_flops(self.run.dev)
        self.bad_iter = torch.full((), -1, dtype=torch.long, device=self.run.dev)   # first non-finite loss, kept on device
        self.loss_acc = torch.zeros((), device=self.run.dev)
        self.step_t = torch.zeros((), dtype=torch.long, device=self.run.dev)   # the iter as a tensor: no recompile per step
        self.next_batch = self.batch(self.iter_num, self.run.rank * self.local_G)
        if self.run.tables is not None:
            self.prefetch_rows(self.iter_num)
            self.run.tables.advance(torch.device(self.run.dev))
        self.t0, self.running_mfu, self.speeds = time.time(), -1.0, []
        self.t_start, self.last_eval, self.eval_s, self.save_s = self.t0, None, 0.0, 0.0
        self.eval_times, self.save_times = [], []       # each eval and each save's blocked time: the first ones compile / pin
        while True:
            lr = get_lr(self.iter_num, cfg)
            for group in self.run.optimizer.param_groups:
                group['lr'] = lr
            it, last = self.iter_num, self.iter_num >= cfg['max_iters']
            self.writer.check()            # a failed background write surfaces here, one step after it happened
            t = time.time()
            if (it % cfg['eval_interval'] == 0 or last) and it != self.run.resumed_at:
                self.evaluate()
                self.eval_times.append(time.time() - t)
            t, self.eval_s = time.time(), self.eval_s + time.time() - t
            saved = it > 0 and it != self.run.resumed_at and (last or (cfg['ckpt_interval'] and it % cfg['ckpt_interval'] == 0))
            if saved:
                self.save()
                self.save_times.append(time.time() - t)
            self.save_s += time.time() - t
            if last or (it == 0 and cfg['eval_only']):
                break
            self.stopped = self.stop_requested(it)
            if self.stopped:                # the state after iter it's eval: what a resume at it expects
                if not saved and it != self.run.resumed_at:
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
    cfg = default_config()
    apply_config(cfg, argv, config_keys)
    run = Run(cfg)
    if cfg['dry_run']:
        if run.master:
            print(json.dumps({'out_dir': cfg['out_dir'], **run.footprint()}))
        return 0
    if run.finished:
        if run.master:
            DirLock(run.out_dir)            # one writer: refused while another process holds the run dir
            print(f"{run.out_dir} is finished (iter {run.iter_num} of --max_iters {cfg['max_iters']}); nothing to do. "
                  f"To train it further, resume with a larger --max_iters.")
        return 0
    trainer = Trainer(run)
    previous = trainer.catch_stops()
    try:
        trainer.train()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if trainer.stopped:
        if run.master:
            print(f"stopped by {signal.Signals(trainer.stopped).name} at iter {trainer.iter_num}: {run.ckpt_path} saved; "
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
    if {'-h', '--help'} & set(sys.argv[1:]):
        print(help_text(SETTINGS, __doc__, 'train.py'))
        sys.exit(0)
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
