"""
Train GPT-2 with Engram memory (nanoGPT style).

  python train.py configs/nine_100_400k.py --seed=1
  torchrun --standalone --nproc_per_node=8 train.py configs/hash_500k.py
  python train.py --help              # every config key with its default and meaning

Defaults are the paper's (Table 1, Nine-100/400K). Every eval appends the route-stratified metrics to
out_dir/metrics.jsonl (and wandb), so the flip analysis never depends on kept checkpoints.
"""
import json
import math
import os
import signal
import sys
import time
from functools import partial

PROCESS_T0 = time.time()        # the start-up's clock: imports, data, model, optimizer before the loop

from engramlib import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import torch
import torch.distributed as dist

from configurator import ConfigError, apply_config, closest
from engramlib import optim
from engramlib.checkpoint import Checkpointer, load_weights
from engramlib.data import DataError, TokenData, to_device
from engramlib.footprint import check_memory, footprint
from engramlib.fsafe import DirLock
from engramlib.meter import Meter
from engramlib.metrics import eval_line, evaluate, wandb_row
from engramlib.offload import DeviceTables, HostTables
from engramlib.options import Group, Option, check_values, help_text, merged
from engramlib.provenance import provenance
from engramlib.resume import check_base, check_resume, fine_tune_base, load_base, restore_optimizer
from engramlib.rundir import WANDB, RunDir, announce, claim
from engramlib.stops import StopSignals
from engramlib.system import (CUDA_GRAPH_MODES, SYSTEM, all_reduce, autocast_context, compile_model, device_peak_flops,
                              exit_now, halve_micro_batch, init_distributed, resolve_loss_chunk, resolve_system,
                              set_precision, split_for_world, wrap_ddp)
from factory import EXTENSIONS, MODEL_GROUPS, RUN_GROUPS, build_model, load_checkpoint, load_index, model_config

# -----------------------------------------------------------------------------
# settings: the run's own here, AdamW's, the system's and wandb's beside their code (engramlib/optim.py, system.py,
# rundir.py), the model's next to its parts (factory.MODEL_GROUPS), the extensions' (factory.RUN_GROUPS).
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
    auto_resume=Option(False, "study.py's: resume when out_dir has a ckpt.pt, else start as init_from says over what a start "
                       "that never saved one left; decided under out_dir's lock", run_only=True),
    overwrite=Option(False, 'True: a run that does not resume may replace the run out_dir holds (else it refuses)', run_only=True),
    final_ckpt=Option('full', "at the end, ckpt.pt keeps: 'full' (resumable further) | 'weights' (1/3 of the size: study.py's "
                      "default)", choices=('full', 'weights'), run_only=True),
    dry_run=Option(False, "check the config and data dir, print the run's footprint (parameters, disk) as JSON, write nothing",
                   run_only=True),
), check=check_run)

BATCH = Group('data: the experiment is the global batch (batch_size x gradient_accumulation_steps windows of block_size); '
              'how it is split into micro-batches and processes is a speed knob only (the same windows either way)', dict(
    batch_size=Option(16, 'windows per micro-batch (lower it if memory runs out; raise accumulation to match)', above=0,
                      run_only=True),
    gradient_accumulation_steps=Option(1, 'micro-batches per iter, across all DDP processes (paper: 16 x 1024 = 4 x 4 = 16 x 1)',
                                       above=0, run_only=True),
    seed=Option(0, 'model init and training windows', at_least=0, below=2**63),
    hash_seed_from_seed=Option(False, 'True: engram_hash_seed = seed, so each seed also draws its own collision pattern'),
))

SETTINGS = [RUN, WANDB, BATCH, *MODEL_GROUPS[1:], *RUN_GROUPS, optim.OPTIM, SYSTEM]   # MODEL_GROUPS[0]: vocab_size, from the data
DEFAULTS = {k: o.default for k, o in merged(SETTINGS).items()}
config_keys = list(DEFAULTS)

def default_config():
    """Every setting at its default: the dict a config file and --key=value overrides update."""
    return dict(DEFAULTS)

def validate_config(cfg):
    """Every value in range and every combination able to train something (each part's own checks), or ConfigError."""
    check_values(SETTINGS, cfg)
    on = [k for e in EXTENSIONS for k in e.host_table_conflicts(cfg)] if cfg['engram_tables'] == 'host' else []
    if on:
        raise ConfigError(f"{', '.join('--' + k for k in on)} read or decay table rows beyond each step's own reads; "
                          f"not with --engram_tables='host'")

# the keys a resume may change (run_only settings); the others make another experiment, unless resume_changes lists them
RUN_KEYS = tuple(k for k, o in merged(SETTINGS).items() if o.run_only)

# -----------------------------------------------------------------------------

class Run:
    """A run before its first step: the settings checked, the processes, the data, the model (from scratch,
    the run's checkpoint, or another run's to fine-tune), its optimizer, its tables (offload.py) and the counters it
    starts from. A finished run builds no model, a dry run only counts its parameters (footprint). Trainer runs it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.lock = claim(cfg) if cfg['auto_resume'] else None
        self.base, self.base_changed = None, []
        if cfg['init_from'] not in ('scratch', 'resume') and cfg['init_from'].endswith('.pt'):    # else check_run refuses it
            base = load_checkpoint(cfg['init_from'], hint="--init_from takes a checkpoint path, 'scratch' or 'resume'.")
            self.base, self.base_changed = base, fine_tune_base(cfg, base, [k for e in EXTENSIONS for k in e.fine_tune_settings])
        validate_config(cfg)
        resolve_system(cfg)
        self.ddp, self.rank, self.world, self.dev = init_distributed(cfg['device'], cfg['backend'])
        self.master = self.rank == 0
        split_for_world(cfg, self.world, self.master)
        self.local_G = cfg['gradient_accumulation_steps'] // self.world
        self.device_type = 'cuda' if self.dev.startswith('cuda') else 'cpu'
        self.autocast = autocast_context(self.device_type, cfg['dtype'])
        set_precision(self.device_type, cfg['deterministic'])     # before the model's first matmul
        torch.manual_seed(cfg['seed'])
        self.out_dir = cfg['out_dir']
        self.ckpt_path = os.path.join(self.out_dir, 'ckpt.pt')
        self.orders = tuple(cfg['ngram_orders'])
        self.data = TokenData(cfg['data_dir'], max(self.orders) - 1)
        self.data.check_block_size(cfg['block_size'])
        self.val_starts = self.data.val_starts(cfg['block_size'], cfg['val_windows'], note=self.master)
        cfg['val_windows'] = len(self.val_starts)       # fewer than asked when val is short: recorded as used
        self.setup_model()

    def setup_model(self):
        """The model (from scratch, the run's checkpoint, or another run's to fine-tune), its tables, its optimizer,
        and the run's counters."""
        cfg = self.cfg
        if self.base_changed and self.master:
            print(f"fine-tuning {cfg['init_from']}: its model settings apply ({', '.join(self.base_changed)})")
        self.mcfg = model_config(cfg, -(-self.data.meta['tokens']['vocab_size'] // 64) * 64)
        index, self.signature = load_index(cfg['data_dir'], self.data.meta, self.mcfg)
        if self.base is not None:
            check_base(self.base, self.signature, self.mcfg.memory, cfg['init_from'])
        self.iter_num, self.best_val_loss, self.wandb_id = 0, 1e9, None
        ckpt = self.resume_checkpoint() if cfg['init_from'] == 'resume' else None
        self.finished = ckpt is not None and self.iter_num >= cfg['max_iters'] and not cfg['eval_only']
        if self.finished:                   # nothing to build: main() says so and stops
            return
        with torch.device('meta'):
            shapes = build_model(self.mcfg, index, shapes_only=True)
        self.n_params, self.host_bytes = check_memory(cfg, self.mcfg, shapes, self.device_type, self.dev)
        if cfg['dry_run']:
            return
        noise = next((n for e in EXTENSIONS if (n := e.noise(cfg)) is not None), None)
        self.raw_model = build_model(self.mcfg, index, noise)
        self.raw_model.loss_chunk = resolve_loss_chunk(cfg['loss_chunk'], self.device_type)
        self.raw_model.sdpa_backend = cfg['sdpa_backend']
        if ckpt is not None:
            load_weights(self.raw_model, ckpt['model'], f"checkpoint {self.ckpt_path}")
        if self.base is not None:
            load_base(self.raw_model, self.base, cfg['init_from'], EXTENSIONS)
        self.tables = (HostTables(self.raw_model, pin=self.device_type == 'cuda') if cfg['engram_tables'] == 'host'
                       else DeviceTables(cfg['table_optimizer']))       # before .to(): host tables stay on the host
        self.raw_model.to(self.dev)
        self.optimizer = optim.configure_optimizers(self.raw_model, cfg['weight_decay'], cfg['learning_rate'],
                                                    (cfg['beta1'], cfg['beta2']), self.device_type, cfg['table_optimizer'])
        if ckpt is not None and not cfg['eval_only']:           # an eval needs the weights only
            restore_optimizer(self.tables, self.optimizer, ckpt, self.ckpt_path)
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


class Trainer:
    """The loop over a Run: the step, and at fixed points the eval, the train-loss log, the checkpoint (RunDir,
    Checkpointer), the tables' staging (run.tables: offload.py) and the stops."""

    def __init__(self, run):
        self.run, self.cfg = run, run.cfg
        self.iter_num, self.best_val_loss, self.wandb_id, self.local_G = run.iter_num, run.best_val_loss, run.wandb_id, run.local_G
        self.stopped = 0            # the signal the run stopped on
        self.ckpt = Checkpointer(run.out_dir, run.raw_model, run.optimizer, run.tables, self.describe, run.master,
                                 run.device_type == 'cuda')
        self.setup_logs()

    def setup_logs(self):
        """The run dir made this run's (RunDir.open), what the run is printed, and the wandb run."""
        cfg = self.cfg
        read_only = cfg['eval_only'] and self.run.resumed_at is not None     # an eval of the run as it is
        self.dir = RunDir(self.run.out_dir, self.run.master, read_only, self.run.lock)
        if not self.run.master:
            return
        self.dir.open(self.run.resumed_at is not None, cfg['overwrite'], self.iter_num,
                      {**cfg, 'data_signature': self.run.signature, 'provenance': provenance(self.run.dev, self.run.world),
                       'not_default': sorted(k for k in DEFAULTS if cfg[k] != DEFAULTS[k])})   # the keys a reader looks at first
        pc = self.run.raw_model.param_counts()
        announce(cfg, self.run, pc, read_only)
        if cfg['wandb_log'] and not read_only:
            self.wandb_id = self.dir.start_wandb(cfg, pc, self.wandb_id)

    def describe(self):
        """What eval needs to rebuild the model from a checkpoint, as it is now (Checkpointer)."""
        r = self.run
        return {'model_args': r.mcfg.args(), 'config': self.cfg, 'data_signature': r.signature, 'data_files': r.data.files_sha256()}

    def stop_non_finite(self, it):
        raise FloatingPointError(f"non-finite loss at iter {it}; stopped. The last good checkpoint {self.run.ckpt_path} is untouched.")

    def batch(self, it, micro, device=None):
        """Global micro-batch `micro` of iteration `it`: global samples [micro*B, (micro+1)*B)."""
        B, T = self.cfg['batch_size'], self.cfg['block_size']
        starts = self.run.data.train_starts(self.cfg['seed'], it, range(micro * B, (micro + 1) * B), T)
        return to_device(self.run.data.windows('train', starts, T), device or self.run.dev)

    def cpu_windows(self, it):
        """This process's micro-batches of iteration it on the CPU, as (x, prev): the rows host tables stage."""
        G0 = self.run.rank * self.local_G
        return [(x, prev) for x, _, prev in [self.batch(it, G0 + j, 'cpu') for j in range(self.local_G)]]

    # -- the loop ----------------------------------------------------------------------------------------------

    def train(self, stops):
        cfg, r = self.cfg, self.run
        self.bad_iter = torch.full((), -1, dtype=torch.long, device=r.dev)   # first non-finite loss, kept on device
        self.loss_acc = torch.zeros((), device=r.dev)
        self.step_t = torch.zeros((), dtype=torch.long, device=r.dev)   # the iter as a tensor: no recompile per step
        self.next_batch = self.batch(self.iter_num, r.rank * self.local_G)
        r.tables.start(self.iter_num, self.cpu_windows, torch.device(r.dev))
        self.meter = Meter(cfg['gradient_accumulation_steps'] * cfg['batch_size'] * cfg['block_size'], cfg['log_interval'],
                           device_peak_flops(r.dev), PROCESS_T0)
        self.last_eval = None
        while True:
            lr = optim.get_lr(self.iter_num, cfg)
            for group in r.optimizer.param_groups:
                group['lr'] = lr
            it, last = self.iter_num, self.iter_num >= cfg['max_iters']
            self.ckpt.writer.check()       # a failed background write surfaces here, one step after it happened
            evals = (it % cfg['eval_interval'] == 0 or last) and it != r.resumed_at or cfg['eval_only']
            with self.meter.timing('eval', evals):
                if evals:
                    self.evaluate()
            saved = it > 0 and it != r.resumed_at and (last or (cfg['ckpt_interval'] and it % cfg['ckpt_interval'] == 0))
            with self.meter.timing('save', saved):
                if saved:
                    self.save()
            if last or cfg['eval_only']:
                break
            self.stopped = stops.requested(it)
            if self.stopped:                # the state after iter it's eval: what a resume at it expects
                if not saved and it != r.resumed_at:
                    self.save()
                break
            self.step_t.fill_(it)
            self.step(lr)
            if it % cfg['log_interval'] == 0:
                self.log_train(lr)
            self.loss_acc.zero_()
            self.iter_num += 1
        self.finish()

    def step(self, lr):
        """One iteration: forward/backward over this rank's share of the global micro-steps (in smaller
        micro-batches if these run out of GPU memory), clip, AdamW, then the tables' and the extensions' own."""
        cfg, it = self.cfg, self.iter_num
        while True:
            try:
                self.accumulate()
                break
            except torch.cuda.OutOfMemoryError:
                pass                       # handled outside the except: its traceback holds the step's tensors
            self.redo_smaller()
        self.bad_iter = torch.where((self.bad_iter < 0) & ~torch.isfinite(self.loss_acc), it, self.bad_iter)
        optim.clip_and_step(self.run.optimizer, self.run.tables, self.run.raw_model, self.run.model, cfg)
        self.run.tables.after_step(lr, cfg['weight_decay'], (cfg['beta1'], cfg['beta2']), torch.device(self.run.dev))
        for e in EXTENSIONS:
            e.after_step(self.run.raw_model, it, lr, cfg)

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
        self.run.tables.after_backward(it + 1, self.cpu_windows, torch.device(self.run.dev))

    def redo_smaller(self):
        """After an out-of-memory: redo the iteration with micro-batches half as large and twice as many (the
        windows are split-invariant: the same experiment, the same losses)."""
        B = self.cfg['batch_size']
        halve_micro_batch(self.cfg, self.run.ddp)
        self.run.optimizer.zero_grad(set_to_none=True)
        self.run.tables.drop_grads()
        self.loss_acc.zero_()
        if self.run.device_type == 'cuda':
            torch.cuda.empty_cache()
        self.local_G *= 2
        self.next_batch = self.batch(self.iter_num, self.run.rank * self.local_G)
        print(f"out of memory at micro-batch {B}: iter {self.iter_num} redone with {B // 2} x "
              f"{self.cfg['gradient_accumulation_steps']} micro-steps (the same global batch)", flush=True)

    # -- the loop's fixed points: eval, save, log, finish ----------------------------------------------------------

    def evaluate(self):
        """Stratified metrics on the fixed validation windows: printed, logged, best.pt and a snapshot when asked."""
        cfg, it, r = self.cfg, self.iter_num, self.run
        r.tables.before_read()             # the table as the eval reads it, and as best.pt / snapshots save it
        m = evaluate(r.eval_model, r.data, r.val_starts, cfg['eval_batch_size'], r.dev, r.autocast, r.orders, r.rank, r.world,
                     partial(all_reduce, ddp=r.ddp))
        if int(self.bad_iter) >= 0 or not math.isfinite(m['val_loss']):
            self.stop_non_finite(int(self.bad_iter) if int(self.bad_iter) >= 0 else it)
        r.data.check_unchanged()            # an eval of changed data is never written
        if not r.master:
            return
        print(eval_line(it, m))
        self.dir.row({'kind': 'eval', 'iter': it, **m})
        self.last_eval = {'iter': it, **{k: m[k] for k in ('val_loss', 'val_loss_hot', 'val_loss_cold', 'hot_cold_delta')}}
        self.dir.log(wandb_row(m), it)
        if m['val_loss'] < self.best_val_loss:
            self.best_val_loss = m['val_loss']
            if cfg['save_best']:
                self.ckpt.save_best(it, m['val_loss'])
        if cfg['save_snapshots']:
            self.ckpt.save_snapshot(it)

    def save(self):
        """ckpt.pt: everything an exact resume needs (at the end with final_ckpt='weights', the weights only); the
        token files checked unchanged before it is written."""
        weights_only = self.iter_num >= self.cfg['max_iters'] and self.cfg['final_ckpt'] == 'weights'
        self.ckpt.save(self.iter_num, weights_only, self.best_val_loss, self.wandb_id, self.run.data.check_unchanged)

    def log_train(self, lr):
        """Every log_interval: the loss (the only host sync of the step), speed and MFU."""
        it = self.iter_num
        lossf = float(all_reduce(self.loss_acc.clone(), self.run.ddp)) / self.run.world
        if int(self.bad_iter) >= 0:
            self.stop_non_finite(int(self.bad_iter))
        dt = self.meter.lap(it)
        if not self.run.master:
            return
        mfu, tok_s = self.meter.mfu(self.run.raw_model, it, dt), self.meter.tokens / dt
        eta = (self.cfg['max_iters'] - it) * dt
        print(f"iter {it}: loss {lossf:.4f}, lr {lr:.2e}, {dt*1000:.1f}ms, {tok_s:,.0f} tok/s"
              + (f", mfu {mfu*100:.1f}%" if mfu >= 0 else '') + (f", eta {eta/60:.1f} min" if it > 0 else ''))
        self.dir.row({'kind': 'train', 'iter': it, 'train_loss': lossf, 'lr': lr})
        self.dir.log({'loss/train': lossf, 'train/lr': lr, 'perf/tok_per_s': tok_s, 'perf/ms_per_iter': dt * 1000,
                      **({'perf/mfu': mfu} if mfu >= 0 else {})}, it)

    def finish(self):
        """summary.json: throughput and size, for the study table (not in metrics.jsonl: timing is not reproducible).
        A run stopped by a signal writes none: it is not finished."""
        t = time.time()
        self.ckpt.writer.wait()                 # the final checkpoint's write: part of the run's time in saves
        final_wait = time.time() - t
        if self.run.master and not self.cfg['eval_only'] and not self.stopped:
            cuda = self.run.device_type == 'cuda'
            self.dir.summary({'params': self.run.raw_model.param_counts(), 'final': self.last_eval,
                              'device': torch.cuda.get_device_name(self.run.dev) if cuda else 'cpu',
                              'world_size': self.run.world, 'iter_num': self.iter_num,
                              **self.meter.summary(final_wait), **self.run.tables.summary()})
            f = self.last_eval
            print(f"done: {self.iter_num} iters in {time.time() - self.meter.t_start:.0f} s; val {f['val_loss']:.4f} at iter "
                  f"{f['iter']} (hot {f['val_loss_hot']:.4f}, cold {f['val_loss_cold']:.4f}); wrote {self.run.out_dir}/"
                  f"{{metrics.jsonl, ckpt.pt{', best.pt' if self.cfg['save_best'] else ''}, summary.json}}")
        self.dir.close(self.stopped)
        if self.run.ddp:
            dist.destroy_process_group()


def main(argv):
    """Train; returns the exit status (0, or 128 + the signal that stopped the run)."""
    cfg = default_config()
    apply_config(cfg, argv, config_keys)
    run = Run(cfg)
    if cfg['dry_run']:
        if run.master:
            print(json.dumps({'out_dir': cfg['out_dir'], **footprint(cfg, run.n_params),
                              'host_memory_bytes': int(run.host_bytes)}))
        return 0
    if run.finished:
        if run.master:
            run.lock = run.lock or DirLock(run.out_dir)     # one writer: refused while another process holds the run dir
            print(f"{run.out_dir} is finished (iter {run.iter_num} of --max_iters {cfg['max_iters']}); nothing to do. "
                  f"To train it further, resume with a larger --max_iters.")
        return 0
    trainer = Trainer(run)
    with StopSignals(run.ddp, run.master, run.dev, cfg['log_interval']) as stops:
        trainer.train(stops)
    if trainer.stopped:
        if run.master:
            print(f"stopped by {signal.Signals(trainer.stopped).name} at iter {trainer.iter_num}: {run.ckpt_path} saved; "
                  f"continue with the same command and --init_from='resume'", file=sys.stderr)
        return 128 + trainer.stopped
    return 0

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
