"""
The run dir as a run writes it: one writer (its lock), config.json, metrics.jsonl (rows appended whole),
summary.json only at a finished end, and the wandb run beside them. What a fresh run may replace, and what it
refuses to destroy.
"""
import json
import os
import re
import shutil

from engramlib.data import DataError, save_json
from engramlib.fsafe import DirLock, append_line, refuse_shared_dir, remove_stale_temps
from engramlib.optim import get_lr
from engramlib.options import Group, Option
from engramlib.resume import truncate_metrics


WANDB = Group('wandb', dict(
    wandb_log=Option(False, 'log to wandb (study.py and quickstart.sh turn it on; offline without a login)', run_only=True),
    wandb_project=Option('engram-nine', 'wandb project name', run_only=True),
    wandb_group=Option('', 'runs of one config across seeds (default: none)', run_only=True),
    wandb_run_name=Option('', "default: the out_dir's name", run_only=True),
))

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
    config.json, metrics.jsonl, summary.json at a finished end, and the wandb run beside them. read_only (an eval of
    a run's checkpoint, --eval_only with --init_from='resume'): the lock only, nothing written or removed."""

    def __init__(self, out_dir, master, read_only=False, lock=None):
        self.path, self.master, self.wandb, self.read_only = out_dir, master, None, read_only
        self.metrics = os.path.join(out_dir, 'metrics.jsonl')
        if master and lock is None:
            refuse_shared_dir(out_dir, '--out_dir', data_dirs_too=True)
        self.lock = lock or (DirLock(out_dir) if master else None)      # lock: taken already (--auto_resume: claim)

    def open(self, resumed, overwrite, iter_num, record):
        """Make the dir this run's: temps of killed writes removed, the files of the run it held cleared (or
        refused), metrics.jsonl cut back to the checkpoint on resume, config.json (`record`) written."""
        if self.read_only:
            return
        if remove_stale_temps(self.path, {'': '|'.join(map(re.escape, RUN_FILES)), 'snapshots': r'iter_\d{6}\.pt'}):
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
        if self.read_only:
            return
        append_line(self.metrics, json.dumps(row, sort_keys=True) + '\n')

    def log(self, values, step):
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def summary(self, values):
        if self.read_only:
            return
        save_json(os.path.join(self.path, 'summary.json'), values)

    def close(self, stopped):
        if self.wandb is not None:
            self.wandb.finish(exit_code=128 + stopped if stopped else None)


def announce(cfg, run, pc, read_only):
    """What the run is, printed before its first step: a schedule cut short, data, device, batch, resume, parameters."""
    if cfg['decay_lr'] and cfg['max_iters'] < cfg['lr_decay_iters']:
        print(f"note: --max_iters {cfg['max_iters']} < lr_decay_iters {cfg['lr_decay_iters']}: the cosine stops part way "
              f"(lr {get_lr(cfg['max_iters'], cfg):.2e} at the end, not {cfg['min_lr']:.0e}); pass --lr_decay_iters="
              f"{cfg['max_iters']} to decay fully")
    t = run.data.meta['tokens']
    B, G, T = cfg['batch_size'], cfg['gradient_accumulation_steps'], cfg['block_size']
    print(f"run {run.out_dir}: data {cfg['data_dir']} ({t['tokenizer']}, {t['n_train']:,} train tokens), "
          f"{run.dev} {cfg['dtype']}, {cfg['max_iters']} iters of {B * G} x {T} tokens "
          f"({G} micro-batch{'es' if G > 1 else ''} of {B}{f' over {run.world} processes' if run.ddp else ''})")
    if read_only:
        print(f"evaluating {cfg['out_dir']}/ckpt.pt at iter {run.resumed_at} (eval only: the run dir is left as it is)")
    elif run.resumed_at is not None:
        print(f"resumed from {cfg['out_dir']}/ckpt.pt at iter {run.resumed_at}: continuing to {cfg['max_iters']}")
    frozen = sum(p.numel() for p in run.raw_model.parameters() if not p.requires_grad)   # a fine-tune's base
    print(f"params: backbone {pc['backbone']:,} | tables {pc['tables']:,} | gate {pc['gate']:,} | total {pc['total']:,}"
          + (f" | frozen {frozen:,}" if frozen else ''))

def claim(cfg):
    """--auto_resume (study.py's), decided under out_dir's lock (rank 0 takes it now and keeps it: the lock is
    returned), so a run another process finishes meanwhile is resumed (and found finished), never replaced: init_from
    'resume' when out_dir has a ckpt.pt, else the config's own start over what a start that never saved one left."""
    lock = None
    if int(os.environ.get('RANK', 0)) == 0:
        refuse_shared_dir(cfg['out_dir'], '--out_dir', data_dirs_too=True)
        lock = DirLock(cfg['out_dir'])
    if os.path.exists(os.path.join(cfg['out_dir'], 'ckpt.pt')):
        cfg['init_from'] = 'resume'
    else:
        cfg['overwrite'] = True
    return lock
