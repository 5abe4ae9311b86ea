"""
Route-stratified evaluation and study reports (paper §4.3 and §5: Tables 3-7, Figures 2-4).

  python eval_stratified.py --ckpt out/quickstart/tiny_nine_s0/ckpt.pt     # one checkpoint, deep report
  python eval_stratified.py --runs 'out/quickstart/*' --report reports/qs   # whole study: tables + figures
  python eval_stratified.py --key_stability out/<run with save_snapshots>   # W_K key stability (§6.3)

One checkpoint: stratified metrics over the fixed validation windows, alpha buckets (layer mean and
per layer), per-order hot share, and collision statistics of its hash tables. A study: every run dir
(config.json + metrics.jsonl [+ summary.json]) grouped by config across seeds: Table 3 (mean +- std),
Table 4 (flip), Table 5 (N_hot ablation), Table 6 (alpha evolution), Table 7 (alpha buckets),
per-layer delta alpha (Fig. 4), with the paper's numbers beside ours.
Outputs: report.json (deterministic: same inputs, same bytes), report.md, PNG figures, optional wandb.
"""
import argparse
import glob
import os
import sys

from configurator import HelpFormatter

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    p.add_argument('--ckpt', help='one checkpoint: deep report')
    p.add_argument('--key_stability', metavar='RUN_DIR', help='key stability across the weight snapshots of one run')
    p.add_argument('--runs', help="glob of run dirs (out_dir of train.py), e.g. 'out/*'")
    p.add_argument('--report', help='output dir (default: <ckpt dir>/eval, <run>/eval or reports/study)')
    p.add_argument('--data_dir', help="override the checkpoint's data_dir")
    p.add_argument('--val_windows', type=int, help="validation windows (default: the run's val_windows; "
                   "the paper's Table 7 counts 819,200 positions = 800 windows of 1024)")
    p.add_argument('--hot_size', type=int, help="N_hot for is_hot labels of Hash/baseline checkpoints (default: the run's hot_size)")
    p.add_argument('--device', default='auto', help="'auto' (cuda if available) | cpu | cuda")
    p.add_argument('--wandb', action='store_true', help='also log tables, figures and summary to wandb')
    p.add_argument('--wandb_project', default='engram-nine')
    a = p.parse_args(argv)
    if sum(map(bool, (a.ckpt, a.runs, a.key_stability))) != 1:
        p.error('give exactly one of --ckpt, --runs or --key_stability')
    if a.val_windows is not None and a.val_windows < 1 or a.hot_size is not None and a.hot_size < 1:
        p.error(f"--val_windows and --hot_size must be >= 1 (got {a.val_windows}, {a.hot_size})")
    if a.device.startswith('cuda'):
        from engramlib.system import device_problem
        if device_problem(a.device):
            p.error(device_problem(a.device))
    return a

if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):   # before the heavy imports: help in a blink
    parse_args()

from engramlib import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
from tqdm import tqdm

from engramlib.data import DataError
from engramlib.fsafe import own_subdir
from report.evaluate import evaluate_checkpoint
from report.figures import figure_key_stability, figures
from report.inputs import paper
from report.markdown import md_checkpoint, md_key_stability, md_study
from report.output import console_summary, log_wandb, write_report
from report.runs import data_sections, load_run, run_identity
from report.stability import key_stability
from report.study import study
from engramlib.system import resolve_device


def main(argv=None):
    a = parse_args(argv)
    a.device = resolve_device(a.device)
    try:
        if a.key_stability:
            out = a.report or own_subdir(a.key_stability, 'eval')
            rep = key_stability(a.key_stability, a.data_dir, a.val_windows, a.device)
            md = md_key_stability(rep)
            images = figure_key_stability(rep, out)
        elif a.ckpt:
            out = a.report or own_subdir(os.path.dirname(os.path.abspath(a.ckpt)), 'eval')
            rep = evaluate_checkpoint(a.ckpt, a.data_dir, a.val_windows, a.hot_size, a.device)
            md = md_checkpoint(rep)
            m, ref = rep['metrics'], paper()['table7']
            beside = {f"paper {ref['config']}": ref['buckets']} if rep['config'] == ref['config'] else {}
            images = figures([], {'table7': {rep['config']: m.get('alpha_buckets'), **beside},
                                  'delta_alpha_per_layer': {rep['config']: {k[len('delta_alpha_'):]: v for k, v in m.items()
                                                                            if k.startswith('delta_alpha_L')}}}, out)
        else:
            dirs = sorted(d for d in glob.glob(a.runs) if os.path.isdir(d))
            if not dirs:
                raise DataError(f"--runs '{a.runs}' matches no directory; point it at train.py out_dirs, e.g. 'out/*'.")
            runs, skipped, seen = [], {}, {}
            for d in tqdm(dirs, desc='runs'):
                try:
                    first = seen.setdefault(run_identity(d), d)
                    if first != d:              # a link to a run, or a copy of one: the same seed, counted once
                        raise DataError(f"the same run as {first} (a link to it or a copy: the same metrics.jsonl); counted once")
                    runs.append(load_run(d))
                except DataError as e:          # one bad run does not stop the report: it is listed as skipped
                    skipped[d] = str(e)
                    print(f"skipped {d}: {e}", file=sys.stderr)
            if not runs:
                raise DataError(f"no run under --runs '{a.runs}' can be reported:\n  " + '\n  '.join(f"{d}: {e}" for d, e in skipped.items()))
            out = a.report or 'reports/study'
            rep = {'runs': runs, 'skipped': skipped, **study(runs), 'data_side': data_sections(runs, a.device)}
            md = md_study(rep)
            images = figures(runs, rep, out)
        md += '\n## Figures\n\n' + '\n\n'.join(f"![{os.path.basename(i)[:-4]}]({os.path.basename(i)})" for i in images) + '\n'
        write_report(rep, md, out)
        print(console_summary(md))
        print(f"\nwrote {out}/report.json, {out}/report.md (the whole report: every table), " +
              ', '.join(os.path.basename(i) for i in images))
        if a.wandb:
            log_wandb(rep, images, a.wandb_project, out)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)

if __name__ == '__main__':
    main()
