"""
Train a list of configs x seeds, then write the study report.

  python study.py configs/study/*.py --seeds=0,1 --out=out/study --report=reports/study [-- --max_iters=1000 ...]

Resumable: a run with summary.json is finished and skipped; a run with ckpt.pt is resumed; anything
else starts from scratch. Arguments after `--` go to every train.py call (e.g. a shorter schedule).
Before it starts, it checks that the disk under --out holds what the runs will keep (each config's
footprint from train.py --dry_run=True); a finished run keeps its final weights (final_ckpt='weights',
a third of a resumable checkpoint) unless --keep_optimizer.
wandb: every run logs to wandb (group = config, run = config_s<seed>) and the report to a summary run;
offline (./wandb, `wandb sync` later) when there is no login; --no_wandb or WANDB_MODE=disabled turns it off.
Run dirs are <out>/<config name>_s<seed>; runs of one config share the wandb group <config name>.
Runs go seed by seed (every config's seed 0 first), so a study cut short still pairs its configs.
--jobs N trains N runs at once, each with cores / N threads: on a small CPU, two 1-thread runs do
more work per second than one 2-thread run (tiny matmuls scale poorly across threads).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from configurator import HelpFormatter, override

HERE = os.path.dirname(os.path.abspath(__file__))

def run_dirs(configs, seeds, out):
    for seed in seeds:
        for cfg in configs:
            name = os.path.splitext(os.path.basename(cfg))[0]
            yield cfg, name, seed, os.path.join(out, f'{name}_s{seed}')

def command(cfg, name, seed, out_dir, extra):
    """train.py's command for one run: resumed from its checkpoint, or started afresh (a start killed before its first
    checkpoint left logs but nothing to resume, and the study replaces them: it made them). train.py decides which
    under the run dir's lock (--auto_resume=True): a run another study.py finishes meanwhile is never replaced."""
    resume = os.path.exists(os.path.join(out_dir, 'ckpt.pt'))       # for the line this prints only
    cmd = [sys.executable, os.path.join(HERE, 'train.py'), cfg, f'--seed={seed}', override('out_dir', out_dir), override('wandb_group', name)]
    return cmd + ['--auto_resume=True'] + extra, resume

STOPS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

def wandb_env(on):
    """The runs' environment: wandb offline unless this machine has a login (a key in the env or ~/.netrc) or
    WANDB_MODE says otherwise; None when wandb is off or WANDB_MODE is set already."""
    if not on or 'WANDB_MODE' in os.environ:
        return None
    netrc = os.path.expanduser('~/.netrc')
    logged_in = 'WANDB_API_KEY' in os.environ or (os.path.exists(netrc) and 'api.wandb.ai' in open(netrc).read())
    return None if logged_in else {'WANDB_MODE': 'offline'}

def finished(out_dir):
    return os.path.exists(os.path.join(out_dir, 'summary.json'))

def footprints(todo, extra):
    """{config: train.py's footprint} for every config with an unfinished run (a dry run per config: it also
    catches a bad config or data dir before anything trains)."""
    out = {}
    for cfg, name, seed, out_dir in todo:
        if cfg in out or finished(out_dir):
            continue
        p = subprocess.run([sys.executable, os.path.join(HERE, 'train.py'), cfg, override('out_dir', out_dir), *extra,
                            '--dry_run=True'], capture_output=True, text=True)
        if p.returncode:
            sys.exit(p.stderr.strip() or f"error: {cfg}: train.py --dry_run=True failed ({p.returncode})")
        out[cfg] = json.loads(p.stdout.strip().splitlines()[-1])
    return out

def free_bytes(path):
    while not os.path.exists(path):
        path = os.path.dirname(os.path.abspath(path))
    return shutil.disk_usage(path).free

def check_disk(todo, extra, out):
    """Refuse, with the numbers, a study whose unfinished runs would keep more than the disk has free."""
    fp = footprints(todo, extra)
    runs = [cfg for cfg, _, _, out_dir in todo if not finished(out_dir)]
    if not runs:
        return
    need = sum(fp[c]['keeps_bytes'] for c in runs) + max(fp[c]['temp_bytes'] for c in runs)
    free = free_bytes(out)
    print(f"disk: {len(runs)} runs to train keep about {need / 1e9:,.1f} GB (with one checkpoint being written); "
          f"{free / 1e9:,.1f} GB free under {out}", flush=True)
    if need > free:
        per = ', '.join(f"{os.path.basename(c)} {fp[c]['keeps_bytes'] / 1e9:,.2f} GB" for c in dict.fromkeys(runs))
        sys.exit(f"error: the study's {len(runs)} unfinished runs keep about {need / 1e9:,.1f} GB ({per} each, plus "
                 f"{max(fp[c]['temp_bytes'] for c in runs) / 1e9:,.1f} GB for the temp file of a checkpoint being written), "
                 f"but {out} has {free / 1e9:,.1f} GB free. Free space, or put --out on a larger disk.")

def forward_stops(running):
    """A SIGTERM or SIGUSR1 to study.py (a scheduler's stop, or its early warning) goes on to every run it
    started, so none is orphaned; Ctrl-C already reaches them (one process group). Each run saves ckpt.pt and
    ends; study.py waits for them and exits 128 + signal."""
    def stop(signum, frame):
        for proc, _, out_dir in running:
            if proc.poll() is None and signum != signal.SIGINT:
                proc.send_signal(signum)
        for proc, _, _ in running:
            proc.wait()
        print(f"stopped by {signal.Signals(signum).name}: {', '.join(d for _, _, d in running) or 'no run'} "
              f"signalled; re-run study.py to continue", file=sys.stderr)
        sys.exit(128 + signum)
    for sig in STOPS:
        signal.signal(sig, stop)

def train_all(todo, extra, jobs):
    """Run every unfinished run, at most `jobs` at a time; stop at the first failure."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads) if jobs > 1 else None
    running = []
    forward_stops(running)
    for i, (cfg, name, seed, out_dir) in enumerate(todo):
        if finished(out_dir):
            print(f"[{i + 1}/{len(todo)}] {out_dir}: finished, skipped")
            continue
        while len(running) >= jobs:
            wait_one(running)
        cmd, resume = command(cfg, name, seed, out_dir, extra)
        print(f"[{i + 1}/{len(todo)}] {out_dir}: {'resuming' if resume else 'training'}", flush=True)
        running.append((subprocess.Popen(cmd, env=env), cmd, out_dir))
    while running:
        wait_one(running)

def wait_one(running):
    """Wait until one of the running runs ends and remove it from the list; exit if it failed."""
    while True:
        for r in running:
            proc, cmd, out_dir = r
            if proc.poll() is not None:
                if proc.returncode in [128 + s for s in STOPS]:      # the run was stopped (and saved), not broken
                    for other, _, _ in running:
                        other.wait()
                    sys.exit(f"{out_dir} was stopped by {signal.Signals(proc.returncode - 128).name} (its ckpt.pt is "
                             f"saved); re-run study.py to continue")
                if proc.returncode != 0:
                    for other, _, _ in running:
                        other.wait()
                    sys.exit(f"error: {out_dir} failed (command: {' '.join(cmd)}); fix it and re-run study.py to continue")
                running.remove(r)
                return
        time.sleep(1)

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    p.add_argument('configs', nargs='+')
    p.add_argument('--seeds', default='0,1', help='comma-separated integer seeds')
    p.add_argument('--out', default='out/study', help='folder of the run dirs')
    p.add_argument('--report', default='reports/study', help='folder of the study report')
    p.add_argument('--jobs', type=int, default=1, help='runs trained at once')
    p.add_argument('--keep_optimizer', action='store_true', help="finished runs keep a resumable ckpt.pt (3x the disk)")
    p.add_argument('--no_wandb', action='store_true', help='no wandb runs (the report and metrics.jsonl are the same)')
    a = p.parse_args(argv)
    missing = [c for c in a.configs if not os.path.exists(c)]
    if missing:
        sys.exit(f"error: config file {missing[0]} does not exist")
    try:
        seeds = [int(s) for s in a.seeds.split(',')]
    except ValueError:
        sys.exit(f"error: --seeds must be comma-separated integers, e.g. --seeds=0,1 (got '{a.seeds}')")
    if a.jobs < 1:
        sys.exit(f"error: --jobs must be >= 1 (got {a.jobs})")
    wandb = not a.no_wandb and os.environ.get('WANDB_MODE') != 'disabled'
    os.environ.update(wandb_env(wandb) or {})
    extra = ([] if a.keep_optimizer else ["--final_ckpt='weights'"]) + [f'--wandb_log={wandb}'] + extra
    todo = list(run_dirs(a.configs, seeds, a.out))
    check_disk(todo, extra, a.out)
    train_all(todo, extra, a.jobs)
    sys.exit(subprocess.call([sys.executable, os.path.join(HERE, 'eval_stratified.py'), '--runs', os.path.join(a.out, '*'),
                              '--report', a.report] + (['--wandb'] if wandb else [])))

if __name__ == '__main__':
    main()
