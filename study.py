"""
Train a list of configs x seeds, then write the study report.

  python study.py configs/study/*.py --seeds=0,1 --out=out/study --report=reports/study [-- --max_iters=1000 ...]

Resumable: a run with summary.json is finished and skipped; a run with ckpt.pt is resumed; anything
else starts from scratch. Arguments after `--` go to every train.py call (e.g. a shorter schedule).
Run dirs are <out>/<config name>_s<seed>; runs of one config share the wandb group <config name>.
Runs go seed by seed (every config's seed 0 first), so a study cut short still pairs its configs.
--jobs N trains N runs at once, each with cores / N threads: on a small CPU, two 1-thread runs do
more work per second than one 2-thread run (tiny matmuls scale poorly across threads).
"""
import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

def run_dirs(configs, seeds, out):
    for seed in seeds:
        for cfg in configs:
            name = os.path.splitext(os.path.basename(cfg))[0]
            yield cfg, name, seed, os.path.join(out, f'{name}_s{seed}')

def command(cfg, name, seed, out_dir, extra):
    resume = os.path.exists(os.path.join(out_dir, 'ckpt.pt'))
    cmd = [sys.executable, os.path.join(HERE, 'train.py'), cfg, f'--seed={seed}', f"--out_dir='{out_dir}'", f"--wandb_group='{name}'"]
    return cmd + (["--init_from='resume'"] if resume else []) + extra, resume

def forward_stops(running):
    """A SIGTERM to study.py (a scheduler's stop) goes on to every run it started, so none is orphaned;
    Ctrl-C already reaches them (one process group). study.py then waits for them and exits 128 + signal."""
    def stop(signum, frame):
        for proc, _, out_dir in running:
            if proc.poll() is None and signum == signal.SIGTERM:
                proc.send_signal(signum)
        for proc, _, _ in running:
            proc.wait()
        print(f"stopped by {signal.Signals(signum).name}: {', '.join(d for _, _, d in running) or 'no run'} "
              f"signalled; re-run study.py to continue", file=sys.stderr)
        sys.exit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)

def train_all(todo, extra, jobs):
    """Run every unfinished run, at most `jobs` at a time; stop at the first failure."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads) if jobs > 1 else None
    running = []
    forward_stops(running)
    for i, (cfg, name, seed, out_dir) in enumerate(todo):
        if os.path.exists(os.path.join(out_dir, 'summary.json')):
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+')
    p.add_argument('--seeds', default='0,1', help='comma-separated integer seeds')
    p.add_argument('--out', default='out/study', help='folder of the run dirs')
    p.add_argument('--report', default='reports/study', help='folder of the study report')
    p.add_argument('--jobs', type=int, default=1, help='runs trained at once')
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
    train_all(list(run_dirs(a.configs, seeds, a.out)), extra, a.jobs)
    sys.exit(subprocess.call([sys.executable, os.path.join(HERE, 'eval_stratified.py'), '--runs', os.path.join(a.out, '*'), '--report', a.report]))

if __name__ == '__main__':
    main()
