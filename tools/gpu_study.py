"""
The GPU replica (configs/gpu_replica/) in one GPU window: the paper's flip study on ~20M tokens, prepared on a CPU,
run in at most 9 minutes on one H100/H200, offline, on a bare image (torch, numpy, tokenizers: no datasets, wandb or
bbhash). Run through gpu_study.sh (docs/gpu_replica.md says what it measured):

  bash gpu_study.sh --prepare --source FILE... [PACK]   # a CPU machine with the venv: corpus -> data dir -> PACK
  bash gpu_study.sh [PACK] [OUT]                        # on the GPU (carry PACK along with the repo)
  bash gpu_study.sh --dry [PACK] [OUT]                  # a CPU: the same steps at tiny shapes

--configs DIR runs PLAN's names from another config dir (configs/gpu_replica_v2: the regime docs/datamap.md chose;
docs/gpu_replica.md#v2 has its commands); --tokenizer SPEC prepares with a named tokenizer instead of the corpus's BPE.

--prepare  tools/replica_corpus.py (dedup, document shuffle, a BPE of --vocab_size ids) and prepare_fineweb.py with the
           configs' N_hot values into data/gpu_replica; the report's data-only tables that cost minutes (the KN
           trigram on random shares of train documents, 10 draws each; fingerprint false positives) into its
           data_side.json; regime.json (the
           regime's measured quantities; `--regime PATH` also writes it there, e.g. configs/gpu_replica/regime.json);
           PACK/gpu_replica.tar.xz (standard library): the data dir without its n-gram counts (~330 MB), which the
           GPU machine rebuilds, byte-identical to the sha256 meta.json holds.
GPU        unpack (the counts rebuilt in a background process); a smoke gate (the main pair, 40 iters, both at
           once: <= 60 s); then the runs in PLAN's order (the main pair's seeds first), SLOTS at a time, a run
           started only if its estimated time fits before the deadline (and killed at it: a run cut short is moved
           to OUT/unfinished, out of the report); the study report (eval_stratified.py: per-position losses on the
           GPU); OUT/gpu_study.tar.gz with every metrics.jsonl, config.json, summary.json and the report, beside
           OUT/gpu_study.json and gpu_study.md (rewritten after every step and run: a cut-short window leaves them).
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

from configurator import load_config, override
from engramlib.fsafe import atomic_write, save_json      # standard library only: runs before any venv
from tools import ROOT, ChildFailed, one_line

CONFIGS = os.path.join('configs', 'gpu_replica')
BUDGET_S = 540                  # the whole GPU command, compile-free start-up included (the window: 15 min with ~100 s boot)
REPORT_RESERVE_S = 100          # the report and the archive, after the last run
SLOTS = 3                       # runs at once on the one GPU: a 6 x 512 model alone leaves it idle between launches
PACK_NAME = 'gpu_replica.tar.xz'
COUNTS = ('ngrams_o2_keys.npy', 'ngrams_o2_counts.npy', 'ngrams_o3_keys.npy', 'ngrams_o3_counts.npy',
          'rawgrams_o3_keys.npy', 'rawgrams_o3_counts.npy')
# (config, seeds) in the order they run: the main pair's seeds, then the N_hot ablation, then the rest
PLAN = [('hash_500k', (0, 1, 2)), ('nine_100_400k', (0, 1, 2)), ('nine_20_480k', (0, 1)), ('nine_50_450k', (0, 1)),
        ('hash_300k', (0, 1)), ('hash_800k', (0, 1)), ('nine_membership_only', (0, 1)), ('nine_hot_dropout', (0, 1)),
        ('hash_500k', (3,)), ('nine_100_400k', (3,))]
DRY = ['--n_layer=4', '--n_head=2', '--n_embd=32', '--engram_head_dim=8', '--block_size=64', '--batch_size=4',
       '--max_iters=8', '--lr_decay_iters=8', '--warmup_iters=1', '--eval_interval=2', '--log_interval=2',
       '--val_windows=8', '--eval_batch_size=8', "--device='cpu'"]
DRY_RUNS = 8                    # the main pair's three seeds and one of each ablation size: every table and pattern
DRY_SHAPE = (64, 8)             # (block_size, val_windows) of DRY: prepare caches the KN shares for them too

def run_order():
    """[(config name, seed)]: PLAN's entries two at a time (the pair, the ablation, ...), seed-major within each two
    (hash_500k s0, nine_100_400k s0, hash_500k s1, ...), so a window cut short still pairs its configs."""
    order = []
    for i in range(0, len(PLAN), 2):
        group = PLAN[i:i + 2]
        for s in range(max(len(seeds) for _, seeds in group)):
            order += [(c, seeds[s]) for c, seeds in group if s < len(seeds)]
    return order

def config_values(name):
    """A gpu_replica config's settings (with the base it includes)."""
    return load_config(os.path.join(ROOT, CONFIGS, f'{name}.py'))

def py(args):
    """A repo script as a user runs it; raises with the end of its output when it fails."""
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise ChildFailed(args, p.returncode, p.stderr or p.stdout)
    return p

# -- on the CPU: the data, its data-side tables, the regime, the pack -----------------------------------------

def prepare(sources, data, pack, vocab_size, regime_copy, tokenizer=None):
    src = f'{data}_src'
    hot = sorted({config_values(c)['hot_size'] for c, _ in PLAN})
    py(['-m', 'tools.replica_corpus', '--source', *sources, '--out', src, '--vocab_size', str(vocab_size)])
    p = py(['prepare_fineweb.py', '--source', os.path.join(src, 'corpus.jsonl'), '--tokenizer', tokenizer or os.path.join(src, 'tokenizer.json'),
            '--num_tokens', '1_000_000_000', '--hot_sizes', ','.join(map(str, hot)), '--out', data])
    print(p.stdout[-1200:])
    base = config_values('nine_100_400k')
    from report.databaseline import data_side
    data_side(data, hot, [(base['block_size'], base['val_windows']), DRY_SHAPE])
    regime = measure_regime(data)
    for path in filter(None, (os.path.join(data, 'regime.json'), regime_copy)):
        save_json(path, regime)
    os.makedirs(pack, exist_ok=True)
    t = time.time()
    write_pack(data, os.path.join(pack, PACK_NAME))
    mib = os.path.getsize(os.path.join(pack, PACK_NAME)) / 2**20
    print(f"packed {data} into {pack}/{PACK_NAME}: {mib:.1f} MiB in {time.time() - t:.0f} s (carry {pack} to the GPU machine)")
    if mib > 50:
        sys.exit(f"error: the pack is {mib:.1f} MiB, over the 50 MiB a GPU call may carry with the repo; prepare fewer tokens")
    return regime

def measure_regime(data_dir):
    """The regime's quantities as measured on the data and the configs (configs/gpu_replica/regime.json)."""
    from engramlib.data import load_meta
    meta = load_meta(data_dir)
    t, cov = meta['tokens'], meta['coverage']
    cfgs = {c: config_values(c) for c, _ in PLAN}
    base = cfgs['hash_500k']
    trained = base['max_iters'] * base['batch_size'] * base['gradient_accumulation_steps'] * base['block_size']
    L, d = base['n_layer'], base['n_embd']
    non_emb = L * (12 * d * d + 13 * d) + 2 * d          # GPT-2 blocks (weights and biases) + the final LayerNorm
    distinct = {int(o): n for o, n in meta['ngrams']['distinct'].items()}
    return {
        'data': {'train_tokens': t['n_train'], 'val_tokens': t['n_val'], 'vocab_size': t['vocab_size'],
                 'canonical_ids': meta['canonical']['n_canonical'], 'distinct_ngrams': distinct,
                 'tokenizer_sha256': t['tokenizer_sha256'], 'train_sha256': meta['files']['train.bin']},
        'hot_coverage': {'train': cov['train'], 'val': cov['val']},
        'tokens_trained': trained, 'epochs': trained / t['n_train'], 'optimizer_steps': base['max_iters'],
        'tokens_per_step': trained // base['max_iters'],
        'non_embedding_params': non_emb, 'non_embedding_params_per_train_token': non_emb / t['n_train'],
        'n_hot_over_vocab': {c: cfgs[c]['hot_size'] / t['vocab_size'] for c in ('nine_20_480k', 'nine_50_450k', 'nine_100_400k')},
        'collision_load': {c: {f'{o}-gram': distinct[o] / cfgs[c]['table_size'] for o in distinct}
                           for c in ('hash_300k', 'hash_500k', 'hash_800k')},
        'paper': {'train_tokens': 95_000_000, 'epochs': 0.86, 'optimizer_steps': 5000, 'tokens_per_step': 16_384,
                  'non_embedding_params_per_train_token': 0.89, 'hot_coverage_train': 0.59, 'n_hot_over_vocab': 0.78},
    }

def write_pack(data_dir, path):
    """The data dir minus its n-gram counts (rebuilt on unpacking) as one xz tar, written beside and renamed."""
    names = sorted(os.path.relpath(os.path.join(r, f), data_dir) for r, _, fs in os.walk(data_dir) for f in fs)
    keep = [n for n in names if n not in COUNTS and not os.path.basename(n).startswith('.')]
    def write(f):
        with tarfile.open(fileobj=f, mode='w:xz', preset=6) as tar:
            for n in keep:
                tar.add(os.path.join(data_dir, n), arcname=n, recursive=False)
    atomic_write(path, write)

# -- on the GPU: unpack, smoke, runs, report, archive ----------------------------------------------------------

def unpack(pack, data_dir):
    """PACK's data dir at data_dir (unless data_dir holds that very build already), and a background process that
    rebuilds the n-gram counts the pack left out (the report needs them; the runs do not)."""
    with tarfile.open(os.path.join(pack, PACK_NAME)) as tar:
        packed = json.load(tar.extractfile('meta.json'))
        if os.path.exists(os.path.join(data_dir, 'meta.json')):
            with open(os.path.join(data_dir, 'meta.json')) as f:
                if json.load(f)['files'] != packed['files']:
                    sys.exit(f"error: {data_dir} holds another build than {pack}/{PACK_NAME}; move it away or pass --data")
        else:
            tmp = f'{data_dir}.{os.getpid()}.tmp'
            try:
                tar.extractall(tmp, filter='data')      # a member that would land outside tmp is refused (TarError)
                os.replace(tmp, data_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return subprocess.Popen([sys.executable, '-m', 'tools.gpu_study', '--rebuild_counts', data_dir], cwd=ROOT)

def rebuild_counts(data_dir):
    """The counts prepare wrote (its numpy engine: sorted distinct keys and counts, chunking does not change them),
    each checked against the sha256 meta.json holds for it."""
    import numpy as np
    from engramlib.counting import count_numpy
    from engramlib.data import data_file, load_canonical, load_meta, open_tokens, save_npy
    meta = load_meta(data_dir)
    train = open_tokens(data_dir, meta, 'train')
    canon = load_canonical(data_dir, meta).astype(np.int64)
    identity = np.arange(meta['tokens']['vocab_size'] + 1, dtype=np.int64)
    orders, max_order = meta['ngrams']['orders'], meta['ngrams']['max_order']
    for name, ids, os_ in (('ngrams', canon, orders), ('rawgrams', identity, [3])):
        for o, (k, c) in count_numpy(train, ids, os_, max_order, progress=False).items():
            for col, arr in (('keys', k), ('counts', c)):
                rel = f'{name}_o{o}_{col}.npy'
                if not os.path.exists(os.path.join(data_dir, rel)):
                    save_npy(os.path.join(data_dir, rel), arr)
                data_file(data_dir, meta, rel)          # raises unless byte-identical to prepare's

class Study:
    """The GPU side: a timeline in OUT/gpu_study.json, runs scheduled against the deadline."""

    def __init__(self, pack, data, out, dry):
        self.pack, self.data, self.out, self.dry = pack, data, out, dry
        self.t0 = time.time()
        self.deadline = self.t0 + (BUDGET_S if not dry else 10**6) - REPORT_RESERVE_S
        self.runs_dir = os.path.join(out, 'runs')
        self.result = {'dry': dry, 'environment': environment(), 'budget_s': BUDGET_S, 'slots': SLOTS,
                       'steps': {}, 'runs': {}, 'not_started': []}

    def args(self, name, seed, out_dir, extra=()):
        """train.py's arguments for one run (as study.py gives them: the config's runs share a wandb group name)."""
        return ['train.py', os.path.join(CONFIGS, f'{name}.py'), f'--seed={seed}', override('out_dir', out_dir),
                override('wandb_group', name), override('data_dir', self.data), "--final_ckpt='weights'", '--wandb_log=False',
                *(DRY if self.dry else []), *extra]

    def save(self):
        self.result['elapsed_s'] = round(time.time() - self.t0, 1)
        save_json(os.path.join(self.out, 'gpu_study.json'), self.result)
        atomic_write(os.path.join(self.out, 'gpu_study.md'), lambda f: f.write(summary_md(self.result)), mode='w')

    def step(self, name, fn):
        t = time.time()
        try:
            s = {'status': 'pass', 'figures': fn()}
        except Exception as e:
            s = {'status': 'FAIL', 'error': f"{type(e).__name__}: {str(e)[-1500:]}"}
        s['seconds'] = round(time.time() - t, 1)
        self.result['steps'][name] = s
        print(f"[{name}] {s['status']} in {s['seconds']:.0f} s (at {time.time() - self.t0:.0f} s)", flush=True)
        self.save()
        return s['status'] == 'pass'

    def smoke(self):
        """The main pair for 40 iters, both at once, at the real shapes: every part runs, and the per-iter time."""
        iters = 4 if self.dry else 40
        short = [f'--max_iters={iters}', f'--lr_decay_iters={iters}', '--warmup_iters=2', f'--eval_interval={iters}', f'--log_interval={iters // 4}',
                 '--val_windows=4' if not self.dry else '--val_windows=2']
        procs = {c: subprocess.Popen([sys.executable, *self.args(c, 0, os.path.join(self.out, 'smoke', c), short)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env(2))
                 for c in ('hash_500k', 'nine_100_400k')}
        res = {}
        for c, p in procs.items():
            log, _ = p.communicate(timeout=120)
            if p.returncode:
                raise RuntimeError(f"smoke {c} exited {p.returncode}: {log[-1500:]}")
            with open(os.path.join(self.out, 'smoke', c, 'summary.json')) as f:
                s = json.load(f)
            res[c] = {'wall_s': s['wall_s'], 'tok_per_s_median': s['tok_per_s_median'], 'eval_s': s['eval_s']}
        return res

    def env(self, jobs):
        return {**os.environ, 'OMP_NUM_THREADS': str(max(1, (os.cpu_count() or 1) // jobs))}

    def estimate_s(self, name):
        """A run's expected wall time: the longest finished run so far, else the smoke gate's rate (two runs at once)
        scaled to SLOTS at once, plus start-up and the evals."""
        done = [r['wall_s'] for r in self.result['runs'].values() if r.get('status') == 'finished']
        if done:
            return 1.15 * max(done)
        smoke = self.result['steps']['smoke']['figures']
        cfg = config_values(name)
        tok_s = min(s['tok_per_s_median'] for s in smoke.values()) * 2 / SLOTS
        iters = 8 if self.dry else cfg['max_iters']
        tokens = iters * (4 * 64 if self.dry else cfg['batch_size'] * cfg['block_size'])
        evals = iters // (2 if self.dry else cfg['eval_interval']) + 1
        return 1.3 * (tokens / tok_s + max(s['wall_s'] for s in smoke.values()) / 2 + evals * 1.5)

    def train_all(self):
        """Every run of run_order(), SLOTS at a time, none started past what the deadline leaves; runs still going at
        the deadline are killed and moved to OUT/unfinished (the report reads finished runs only)."""
        todo, running = run_order()[:DRY_RUNS] if self.dry else run_order(), []
        while todo or running:
            for r in list(running):
                if r['proc'].poll() is not None:
                    running.remove(r)
                    self.finish(r)
            if time.time() > self.deadline:
                for r in running:
                    r['proc'].kill()
                    r['proc'].wait()
                    self.finish(r, killed=True)
                running = []
                break
            while todo and len(running) < SLOTS:
                name, seed = todo[0]
                est = self.estimate_s(name)
                if time.time() + est > self.deadline:
                    break
                todo.pop(0)
                d = os.path.join(self.runs_dir, f'{name}_s{seed}')
                log = open(os.path.join(self.out, 'logs', f'{name}_s{seed}.log'), 'w')
                proc = subprocess.Popen([sys.executable, *self.args(name, seed, d)], cwd=ROOT, stdout=log,
                                        stderr=subprocess.STDOUT, env=self.env(SLOTS))
                running.append({'proc': proc, 'name': f'{name}_s{seed}', 'dir': d, 'start': time.time(), 'log': log, 'est_s': est,
                                'nth': len(self.result['runs']) + len(running) + 1})
                print(f"  start {name}_s{seed} at {time.time() - self.t0:.0f} s (expected {est:.0f} s)", flush=True)
            if todo and not running:
                break                                  # nothing running and the next run does not fit
            time.sleep(0.5)
        self.result['not_started'] = [f'{n}_s{s}' for n, s in todo]
        self.save()
        return {'finished': sum(r['status'] == 'finished' for r in self.result['runs'].values()),
                'not_started': len(todo)}

    def finish(self, r, killed=False):
        r['log'].close()
        rec = {'nth_started': r['nth'], 'started_at_s': round(r['start'] - self.t0, 1), 'wall_s': round(time.time() - r['start'], 1),
               'expected_s': round(r['est_s'], 1)}
        ok = not killed and r['proc'].returncode == 0 and os.path.exists(os.path.join(r['dir'], 'summary.json'))
        if ok:
            rec['status'] = 'finished'
        else:
            rec['status'] = 'killed at the deadline' if killed else f"failed ({r['proc'].returncode})"
            rec['log_tail'] = open(r['log'].name).read()[-800:]
            os.makedirs(os.path.join(self.out, 'unfinished'), exist_ok=True)
            if os.path.isdir(r['dir']):
                os.replace(r['dir'], os.path.join(self.out, 'unfinished', r['name']))
        self.result['runs'][r['name']] = rec
        print(f"  {r['name']}: {rec['status']} in {rec['wall_s']:.0f} s", flush=True)
        self.save()

    def report(self):
        self.counts.wait(timeout=max(30, self.t0 + BUDGET_S - time.time() - 30))
        if self.counts.returncode:
            raise RuntimeError('rebuilding the n-gram counts failed: see the output above')
        p = py(['eval_stratified.py', '--runs', os.path.join(self.runs_dir, '*'), '--report', os.path.join(self.out, 'report'),
                '--device', 'cpu' if self.dry else 'auto'])
        with open(os.path.join(self.out, 'report', 'report.json')) as f:
            rep = json.load(f)
        self.result['report'] = {'flip_summary': rep['flip_summary'], 'patterns': rep['patterns'],
                                 'table3': rep['table3'], 'kn_by_size': rep['data_side']['kn_by_size'],
                                 'baseline': rep['data_side']['baseline']}
        return {'runs': len(rep['runs']), 'report_lines': p.stdout.count('\n')}

    def archive(self):
        """Everything to bring back in one file: each run's small files, the report, the timeline, the logs."""
        path = os.path.join(self.out, 'gpu_study.tar.gz')
        def write(f):
            with tarfile.open(fileobj=f, mode='w:gz') as tar:
                for root, _, files in os.walk(self.out):
                    for fn in files:
                        full = os.path.join(root, fn)
                        if fn.endswith(('.jsonl', '.json', '.md', '.png', '.log')) and full != path:
                            tar.add(full, arcname=os.path.relpath(full, self.out))
        atomic_write(path, write)
        return {'bytes': os.path.getsize(path)}

    def main(self):
        os.makedirs(os.path.join(self.out, 'logs'), exist_ok=True)
        self.counts = unpack(self.pack, self.data)
        if self.step('smoke', self.smoke):
            self.step('train', self.train_all)
            self.step('report', self.report)
        self.step('archive', self.archive)
        self.result['total_s'] = round(time.time() - self.t0, 1)
        self.save()
        print(f"gpu study: {self.result['total_s']:.0f} s (budget {BUDGET_S} s); wrote {self.out}/gpu_study.json, gpu_study.md, "
              f"gpu_study.tar.gz")
        return 0 if all(s['status'] == 'pass' for s in self.result['steps'].values()) else 1

def tracked(path):
    """Whether git tracks the file at path in this repo (False without git or outside a clone)."""
    try:
        return subprocess.run(['git', 'ls-files', '--error-unmatch', os.path.abspath(path)], cwd=ROOT,
                              capture_output=True).returncode == 0
    except OSError:
        return False

def environment():
    import platform
    import torch
    cuda = torch.cuda.is_available()
    return {'device': torch.cuda.get_device_name(0) if cuda else f'cpu ({platform.machine()})', 'torch': torch.__version__,
            'cuda': torch.version.cuda, 'python': platform.python_version(), 'date': time.strftime('%Y-%m-%d %H:%M:%S')}

def summary_md(r):
    env = r['environment']
    lines = [f"# GPU replica{' (dry run, CPU)' if r['dry'] else ''}\n", f"{env['device']}, torch {env['torch']}, CUDA {env['cuda']}, "
             f"{env['date']}; {r.get('elapsed_s', 0):.0f} s of a {r['budget_s']} s budget, {r['slots']} runs at once\n",
             '| step | result | seconds |', '|---|---|---|']
    lines += [f"| {n} | {s['status']} | {s['seconds']:.0f} |" for n, s in r['steps'].items()]
    lines += ['', '| run | status | started at (s) | wall (s) | expected (s) |', '|---|---|---|---|---|']
    lines += [f"| {n} | {x['status']} | {x['started_at_s']:.0f} | {x['wall_s']:.0f} | {x['expected_s']:.0f} |" for n, x in r['runs'].items()]
    if r['not_started']:
        lines.append(f"\nnot started (would not finish before the deadline): {', '.join(r['not_started'])}")
    for f in r.get('report', {}).get('patterns', []):
        lines.append(f"- {f['pattern']}: **{f['verdict']}** ({f['ours']})")
    return '\n'.join(lines) + '\n'

def main(argv):
    global CONFIGS                  # --configs: the one setting every step reads its config dir from
    if argv[:1] == ['--rebuild_counts']:
        rebuild_counts(argv[1])
        return 0
    import argparse
    p = argparse.ArgumentParser(prog='python -m tools.gpu_study', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('--prepare', action='store_true', help='on a CPU machine with the venv: build the data and its pack')
    p.add_argument('--dry', action='store_true', help='the GPU steps at tiny shapes, on a CPU')
    p.add_argument('--source', nargs='+', help='--prepare: the corpus files (.jsonl, .txt, either .xz)')
    p.add_argument('--vocab_size', type=int, default=16384, help="--prepare: the BPE's ids")
    p.add_argument('--tokenizer', help="--prepare: a tokenizer prepare_fineweb.py knows (e.g. deepseek-v3) instead of the corpus's BPE")
    p.add_argument('--configs', default=CONFIGS, help="the study's config dir: PLAN's names in it (configs/gpu_replica_v2: the v2 regime)")
    p.add_argument('--regime', help='--prepare: also write regime.json here (it is always written into the data dir)')
    p.add_argument('--overwrite_tracked', action='store_true', help='--regime may replace a file git tracks (the published '
                   'configs/gpu_replica/regime.json describes the published run: replace it only when publishing a new one)')
    p.add_argument('--data', default=os.path.join('data', 'gpu_replica'), help='the data dir: --prepare writes it (its corpus '
                   'and tokenizer beside it in DATA_src), the GPU side unpacks PACK into it')
    p.add_argument('paths', nargs='*', help='PACK (default data/gpu_replica_pack) [OUT (default out/gpu_study)]')
    a = p.parse_args(argv)
    CONFIGS = a.configs
    while a.source and not a.source[-1].endswith(('.jsonl', '.txt', '.xz')) and len(a.paths) < 2:   # `--source F... DIR`
        a.paths.insert(0, a.source.pop())
    pack = a.paths[0] if a.paths else os.path.join('data', 'gpu_replica_pack')
    out = a.paths[1] if len(a.paths) > 1 else os.path.join('out', 'gpu_study_dry' if a.dry else 'gpu_study')
    if a.prepare:
        if not a.source:
            p.error('--prepare needs --source FILE...')
        if a.regime and tracked(a.regime) and not a.overwrite_tracked:
            sys.exit(f"error: --regime {a.regime} is a file git tracks (it describes a published run); write it elsewhere, "
                     f"or pass --overwrite_tracked to replace it")
        prepare(a.source, a.data, pack, a.vocab_size, a.regime, a.tokenizer)
        return 0
    if not os.path.exists(os.path.join(pack, PACK_NAME)):
        sys.exit(f"error: {pack} has no {PACK_NAME}; make it on a CPU machine with "
                 f"`bash gpu_study.sh --prepare --source FILE... {pack}` and carry it along with the repo"
                 + (" (for --dry any corpus will do: `bash gpu_study.sh --prepare --data data/dry --source "
                    "assets/tinyshakespeare.txt data/dry_pack`, then `bash gpu_study.sh --dry --data data/dry data/dry_pack`)"
                    if a.dry else ''))
    if os.path.exists(out):
        sys.exit(f"error: {out} exists; pass another OUT (a study's runs are never overwritten)")
    os.makedirs(out)
    return Study(pack, a.data, out, a.dry).main()

if __name__ == '__main__':
    sys.exit(one_line(main, sys.argv[1:]))
