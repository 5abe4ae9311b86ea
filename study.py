"""
Train a list of configs x seeds one after another, then write the study report.

  python study.py configs/study/*.py --seeds=0,1 --out=out/study --report=reports/study [-- --max_iters=1000 ...]

Resumable: a run with summary.json is finished and skipped; a run with ckpt.pt is resumed; anything
else starts from scratch. Arguments after `--` go to every train.py call (e.g. a shorter schedule).
Run dirs are <out>/<config name>_s<seed>; runs of one config share the wandb group <config name>.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

def run_dirs(configs, seeds, out):
    for cfg in configs:
        name = os.path.splitext(os.path.basename(cfg))[0]
        for seed in seeds:
            yield cfg, name, seed, os.path.join(out, f'{name}_s{seed}')

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+')
    p.add_argument('--seeds', default='0,1')
    p.add_argument('--out', default='out/study')
    p.add_argument('--report', default='reports/study')
    a = p.parse_args(argv)
    missing = [c for c in a.configs if not os.path.exists(c)]
    if missing:
        sys.exit(f"error: config file {missing[0]} does not exist")
    seeds = [int(s) for s in a.seeds.split(',')]
    todo = list(run_dirs(a.configs, seeds, a.out))
    for i, (cfg, name, seed, out_dir) in enumerate(todo):
        if os.path.exists(os.path.join(out_dir, 'summary.json')):
            print(f"[{i + 1}/{len(todo)}] {out_dir}: finished, skipped")
            continue
        resume = os.path.exists(os.path.join(out_dir, 'ckpt.pt'))
        print(f"[{i + 1}/{len(todo)}] {out_dir}: {'resuming' if resume else 'training'}", flush=True)
        cmd = [sys.executable, os.path.join(HERE, 'train.py'), cfg, f'--seed={seed}', f"--out_dir='{out_dir}'", f"--wandb_group='{name}'"]
        cmd += (["--init_from='resume'"] if resume else []) + extra
        if subprocess.call(cmd) != 0:
            sys.exit(f"error: {out_dir} failed (command: {' '.join(cmd)}); fix it and re-run study.py to continue")
    sys.exit(subprocess.call([sys.executable, os.path.join(HERE, 'eval_stratified.py'), '--runs', os.path.join(a.out, '*'), '--report', a.report]))

if __name__ == '__main__':
    main()
