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
import json
import math
import os
import re
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
        from system import device_problem
        if device_problem(a.device):
            p.error(device_problem(a.device))
    return a

if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):   # before the heavy imports: help in a blink
    parse_args()

import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import numpy as np
import torch
from tqdm import tqdm

from checkpoint import build_model, load_checkpoint, load_index, load_model, load_weights
from data import DataError, TokenData, atomic_write, load_counts, load_meta, read_metrics, save_json, to_device
from fsafe import lock_holder, own_subdir, regular_file
from databaseline import cached, data_baseline, fingerprint_analysis, group_rows, kn_losses, kn_share_rows, position_groups
from metrics import evaluate, flip
from engram import MEMORY, has_hot_tier, has_memory
from model import GPTConfig
from system import autocast_context, resolve_device

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference', 'paper_tables.json')

def paper():
    with open(REFERENCE) as f:
        return json.load(f)

# -----------------------------------------------------------------------------
# one checkpoint

def collision_counts(memory, index, keys, counts, oi, order, chunk=1 << 22):
    """The raw counts behind collision_stats, as tensors on the memory's device (no data-dependent
    shapes, no host sync): keys/counts = every distinct training n-gram of one order; for Nine only
    the cold ones use the hash tables. Returns n keys, slots used per head (K,), training positions
    colliding in every head, training positions of the counted keys."""
    use = index.hot_slots(keys, order) < 0 if memory.hot_tier else torch.ones_like(keys, dtype=torch.bool)
    idx = torch.cat([memory.heads(keys[i:i + chunk], oi, order) for i in range(0, len(keys), chunk)])   # (n, K)
    collide_all, used = use.clone(), []
    for k in range(memory.K):
        occ = torch.zeros(memory.table_size, dtype=torch.long, device=keys.device).scatter_add_(0, idx[:, k], use.long())
        used.append((occ > 0).sum())
        collide_all &= occ[idx[:, k]] >= 2
    return use.sum(), torch.stack(used), (counts * collide_all).sum(), (counts * use).sum()

def collision_stats(memory, index, data_dir, meta):
    """Per (order, head) hash table, over the distinct training n-grams that use it (for Nine: the cold
    ones): slots used, keys per occupied slot, share of training positions whose n-gram shares its
    slot with another n-gram in every head, each beside its expectation under uniform hashing."""
    M, K, n_train = memory.table_size, memory.K, meta['tokens']['n_train']
    device = memory.table.weight.device
    out = []
    for oi, o in enumerate(memory.orders):
        keys, counts = (torch.from_numpy(a).to(device) for a in load_counts(data_dir, meta, o))
        n, used, colliding, total = (t.tolist() for t in collision_counts(memory, index, keys, counts, oi, o))
        p_one = 1 - (1 - 1 / M) ** max(n - 1, 0)          # P(another key lands in my slot)
        for k in range(K):
            out.append({'order': o, 'head': k, 'table_size': M, 'keys': n, 'slots_used': used[k],
                        'slots_used_expected': M * (1 - (1 - 1 / M) ** n),
                        'keys_per_used_slot': n / used[k] if used[k] else float('nan'),
                        'keys_per_used_slot_expected': n / (M * (1 - (1 - 1 / M) ** n)) if n else float('nan'),
                        'positions_colliding_all_heads': colliding / n_train,
                        'positions_colliding_all_heads_expected': total / n_train * p_one ** K})
    return out

def evaluate_checkpoint(ckpt_path, data_dir=None, val_windows=None, hot_size=None, device='cpu'):
    """The checkpoint's stratified metrics on its validation windows, in the precision it was trained
    in (so they equal the train-time eval of the same iter), plus collision statistics."""
    model, ckpt, data_dir, meta = load_model(ckpt_path, data_dir, hot_size)
    cfg, T = ckpt['config'], model.config.block_size
    orders = tuple(model.config.ngram_orders)
    data = TokenData(data_dir, max(orders) - 1)
    data.check_block_size(T)
    starts = data.val_starts(T, val_windows or cfg['val_windows'])
    model.to(device)
    device_type = 'cuda' if device.startswith('cuda') else 'cpu'
    m = evaluate(model, data, starts, cfg['eval_batch_size'], device, autocast_context(device_type, cfg['dtype']), orders)
    report = {'ckpt': os.path.abspath(ckpt_path), 'config': config_name(cfg), 'iter': ckpt['iter_num'],
              'memory': model.config.memory, 'hot_size': model.config.hot_size, 'data_dir': data_dir,
              'dtype': cfg['dtype'], 'val_windows': len(starts), 'metrics': m, 'params': model.param_counts(),
              'coverage_prepare': meta['coverage']['val'].get(str(model.config.hot_size))}
    if model.memory is not None:
        report['collisions'] = collision_stats(model.memory, model.index, data_dir, meta)
    report['data_baseline'] = data_baseline(data, model.index, starts, T, meta['tokens']['vocab_size'])
    return report

# -----------------------------------------------------------------------------
# key stability across snapshots (§6.3: does the gate favour stable keys rather than low loss?)

@torch.no_grad()
def key_stability(run_dir, data_dir=None, val_windows=None, device='cpu', batch_size=None):
    """Cosine similarity of k_t = W_K e_t between adjacent weight snapshots (train with
    save_snapshots=True), hot vs cold positions, per Engram layer; and, at the later snapshot, the
    correlation across positions of alpha with key stability and of alpha with loss. The keys are
    the gates' own (EngramGate.key on the memory vector each layer reads in the model's forward).
    Both snapshots run batch by batch on `device` and only sums are kept: memory does not grow with the windows."""
    snaps = snapshot_paths(run_dir)
    if len(snaps) < 2:
        raise DataError(f"{run_dir}/snapshots has {len(snaps)} snapshot(s); key stability needs two or more. "
                        f"Train with --save_snapshots=True.")
    cfg = read_json(os.path.join(run_dir, 'config.json'), 'run config')
    if not isinstance(cfg, dict) or bad_config_value(cfg.get('data_dir'), str) or bad_config_value(cfg.get('val_windows'), 'positive'):
        raise DataError(f"{run_dir}/config.json lacks data_dir or val_windows: not written by train.py (or edited).")
    data_dir = data_dir or cfg['data_dir']
    meta = load_meta(data_dir)
    prev, pairs, index = None, [], None
    for path in tqdm(snaps, desc='snapshots'):
        snap = load_checkpoint(path)
        mcfg = GPTConfig(**snap['model_args'])
        if not has_memory(mcfg.memory):
            raise DataError(f"{run_dir} has no Engram memory: no keys to compare.")
        if index is None:
            index, _ = load_index(data_dir, meta, mcfg)
            data = TokenData(data_dir, index.max_order - 1)
            starts = data.val_starts(mcfg.block_size, val_windows or cfg['val_windows'])
        model = build_model(mcfg, index)
        load_weights(model, snap['model'], f'snapshot {path}')
        model.eval().to(device)
        if prev is not None:
            pairs.append({'iter_from': prev[1], 'iter_to': snap['iter_num'],
                          'layers': stability_pair(prev[0], model, data, starts, batch_size or cfg.get('eval_batch_size', 16), device)})
        prev = (model, snap['iter_num'])
    return {'run': os.path.basename(run_dir.rstrip('/')), 'pairs': pairs, 'trajectories': ngram_trajectories(run_dir, data_dir)}

def stability_pair(before, after, data, starts, batch_size, device):
    """Per Engram layer: mean cos(k before, k after) at hot and at cold positions, and the correlations of the
    later alpha with that stability and with the loss, accumulated over batches of windows."""
    T = after.config.block_size
    sums = {l: {'hot': [0.0, 0], 'cold': [0.0, 0], 'stab': Moments(), 'loss': Moments()} for l in after.engram_layers}
    for i in range(0, len(starts), batch_size):
        x, y, p = to_device(data.windows('val', starts[i:i + batch_size], T), device)
        k0, cur = gate_keys(before, x, y, p)['k'], gate_keys(after, x, y, p)
        for li, l in enumerate(after.engram_layers):
            cos, a, s = (k0[li] * cur['k'][li]).sum(-1), cur['alpha'][li], sums[l]
            for name, where in (('hot', cur['hot']), ('cold', ~cur['hot'])):
                s[name][0] += float(cos[where].double().sum())
                s[name][1] += int(where.sum())
            s['stab'].add(a, cos)
            s['loss'].add(a, cur['loss'])
    return {f'L{l}': {'cos_hot': s['hot'][0] / s['hot'][1] if s['hot'][1] else None,
                      'cos_cold': s['cold'][0] / s['cold'][1] if s['cold'][1] else None,
                      'corr_alpha_stability': s['stab'].pearson(), 'corr_alpha_loss': s['loss'].pearson()}
            for l, s in sums.items()}

class Moments:
    """Running sums of two paired series (float64): their Pearson correlation without keeping them."""

    def __init__(self):
        self.n, self.a, self.b, self.aa, self.bb, self.ab = 0, 0.0, 0.0, 0.0, 0.0, 0.0

    def add(self, a, b):
        a, b = a.double().flatten(), b.double().flatten()
        self.n += a.numel()
        self.a, self.b = self.a + float(a.sum()), self.b + float(b.sum())
        self.aa, self.bb, self.ab = self.aa + float(a @ a), self.bb + float(b @ b), self.ab + float(a @ b)

    def pearson(self):
        n = self.n
        cov, va, vb = self.ab - self.a * self.b / n, self.aa - self.a ** 2 / n, self.bb - self.b ** 2 / n
        return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else float('nan')

def snapshot_paths(run_dir):
    return sorted(glob.glob(os.path.join(run_dir, 'snapshots', 'iter_*.pt')))

@torch.no_grad()
def ngram_trajectories(run_dir, data_dir=None):
    """Trajectories of sample n-grams' memory rows across a run's weight snapshots (see trajectory_sample)."""
    snaps = snapshot_paths(run_dir)
    vectors, sample = [], None
    for path in snaps:
        snap = load_checkpoint(path)
        if sample is None:
            mcfg = GPTConfig(**snap['model_args'])
            data_dir = data_dir or snap['config']['data_dir']
            meta = load_meta(data_dir)
            sample = trajectory_sample(build_model(mcfg, load_index(data_dir, meta, mcfg)[0]),
                                       load_counts(data_dir, meta, min(mcfg.ngram_orders)))
        table = snap['model']['memory.table.weight']
        vectors.append((snap['iter_num'], {g: table[rows].flatten(1) for g, rows in sample.items()}))
    return trajectories(vectors)

def trajectory_sample(model, counts, n=200):
    """The table rows of sample n-grams of the lowest order (their memory sub-vector: K rows), by group:
    hot (the most frequent, Nine: their hot row), cold (seen at least twice, never hot) with rows of their
    own in every head, and cold colliding in every head with another training n-gram. Fixed for all snapshots."""
    keys, cnt = (torch.from_numpy(a) for a in counts)
    o, mem = min(model.memory.orders), model.memory
    slots = model.index.hot_slots(keys, o)
    rows = mem.order_rows(keys, slots, 0, o)                                   # (n_keys, K)
    occ = torch.stack([torch.bincount(rows[:, k], minlength=mem.rows_per_set)[rows[:, k]] for k in range(mem.K)], 1)
    cold = (slots < 0) & (cnt >= 2)
    groups = {'hot': slots >= 0, 'cold_own_rows': cold & (occ == 1).all(1), 'cold_colliding': cold & (occ >= 2).all(1)}
    out = {}
    for g, mask in groups.items():
        idx = torch.nonzero(mask).flatten()
        idx = idx[torch.argsort(cnt[idx], descending=True, stable=True)[:n]]   # the most frequent of the group
        if len(idx):
            out[g] = rows[idx]
    return out

def trajectories(vectors):
    """Per group and snapshot: mean row-vector norm, mean drift from the previous snapshot, mean cosine to
    the final vector (§7.2 (3): how hot, cold and colliding rows move during training)."""
    final = vectors[-1][1]
    out = {}
    for g in final:
        rows, prev = [], None
        for it, v in vectors:
            cur = v[g].float()
            rows.append({'iter': it, 'norm': float(cur.norm(dim=1).mean()),
                         'drift': float((cur - prev).norm(dim=1).mean()) if prev is not None else None,
                         'cos_to_final': float(torch.nn.functional.cosine_similarity(cur, final[g].float(), dim=1).mean()),
                         'n': len(cur)})
            prev = cur
        out[g] = rows
    return out

def gate_keys(model, x, y, prev):
    """One diagnostic forward: the unit-norm key k_t of every Engram layer (captured from the gate as
    the model runs it), alpha, loss and is_hot per position."""
    ks = []
    hooks = [model.transformer.h[l].engram.register_forward_hook(
        lambda gate, args, out: ks.append(torch.nn.functional.normalize(gate.key(args[1], args[2]).float(), dim=-1)))
        for l in model.engram_layers]
    try:
        _, _, info = model(x, y, prev=prev, diag=True)
    finally:
        for h in hooks:
            h.remove()
    return {'k': ks, 'alpha': info['alpha'], 'loss': info['loss'], 'hot': info['is_hot'].any(0)}

def md_key_stability(ks):
    rows = [[f"{p['iter_from']}→{p['iter_to']}", l, fmt(v['cos_hot']), fmt(v['cos_cold']),
             fmt(v['corr_alpha_stability'], '+.3f'), fmt(v['corr_alpha_loss'], '+.3f')]
            for p in ks['pairs'] for l, v in p['layers'].items()]
    return (f"# Key stability: {ks['run']}\n\ncos(k_t before, k_t after) of W_K e_t for the same validation positions "
            f"between adjacent snapshots; correlations across positions at the later snapshot.\n\n" +
            md_table(['snapshots', 'layer', 'cos hot', 'cos cold', 'corr(α, stability)', 'corr(α, loss)'], rows) +
            "\n## N-gram embedding trajectories (§7.2 (3))\n\nThe memory rows of sample n-grams of the lowest order: "
            "hot, cold with rows of their own, cold colliding in every head; mean over the group.\n\n" +
            md_trajectories(ks['trajectories']))

def md_trajectories(traj):
    return md_table(['group', 'iter', 'n-grams', 'row norm', 'drift since previous', 'cos to final'],
                    [[g, r['iter'], r['n'], fmt(r['norm'], '.4f'), fmt(r['drift'], '.4f'), fmt(r['cos_to_final'], '.3f')]
                     for g, rs in traj.items() for r in rs])

def figure_key_stability(ks, out_dir):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    layers = list(ks['pairs'][0]['layers'])
    for li, l in enumerate(layers):
        it = [p['iter_to'] for p in ks['pairs']]
        col = plt.cm.tab10(li)
        ax.plot(it, [p['layers'][l]['cos_hot'] for p in ks['pairs']], color=col, marker='o', label=f'{l} hot')
        ax.plot(it, [p['layers'][l]['cos_cold'] for p in ks['pairs']], color=col, ls='--', marker='x', label=f'{l} cold')
    ax.set(xlabel='iter (later snapshot)', ylabel='cos(k before, k after)', title='Key stability between snapshots')
    ax.legend(fontsize=7)
    return [save_fig(fig, out_dir, 'key_stability.png')] + figure_trajectories(ks['trajectories'], ks['run'], out_dir)

def figure_trajectories(traj, run, out_dir):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for gi, (g, rs) in enumerate(traj.items()):
        it = [r['iter'] for r in rs]
        for ax, key in zip(axes, ('norm', 'drift', 'cos_to_final')):
            ax.plot(it, [r[key] if r[key] is not None else float('nan') for r in rs], marker='.', color=plt.cm.tab10(gi), label=g)
    for ax, t in zip(axes, ('row norm', 'drift since previous snapshot', 'cos to the final row')):
        ax.set(xlabel='iter', title=t)
    axes[0].legend(fontsize=7)
    fig.suptitle(f'N-gram memory rows over training: {run}', fontsize=9)
    return [save_fig(fig, out_dir, 'ngram_trajectories.png')]

# -----------------------------------------------------------------------------
# runs and the study

def config_name(cfg):
    """Runs of one config across seeds share a name: the wandb group, else out_dir minus a _s<seed> suffix."""
    return cfg.get('wandb_group') or re.sub(r'_s\d+$', '', os.path.basename(str(cfg.get('out_dir', 'run')).rstrip('/')))

# what the study reads from a run's config.json, each with its test (a bad run is skipped with the reason, not a crash)
RUN_CONFIG = {'data_dir': str, 'out_dir': str, 'seed': 'count', 'block_size': 'positive', 'memory': MEMORY,
              'hot_size': 'positive', 'table_size': 'positive', 'engram_layers': list, 'max_iters': 'count'}
EVAL_ROW = ('val_loss', 'hot_cold_delta', 'n_positions')

def bad_config_value(v, want):
    if want in ('count', 'positive'):
        return not (type(v) is int and v >= (want == 'positive'))
    return v not in tuple(want) if isinstance(want, (tuple, dict)) else not isinstance(v, want)   # dict: a registry

def read_json(path, what):
    """A run's JSON file, or a DataError naming it (the caller skips the run)."""
    try:
        regular_file(path, what)
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is missing or damaged ({type(e).__name__}: {str(e)[:120]}); it is not a complete run dir.") from None

def load_run(run_dir):
    path = os.path.join(run_dir, 'metrics.jsonl')
    if not os.path.exists(path):
        raise DataError(f"{run_dir} has no metrics.jsonl; is it a training output dir (out_dir)?")
    holder = lock_holder(run_dir)
    if holder:
        raise DataError(f"{run_dir} is still being trained ({holder}); report it when it has finished.")
    rows = read_metrics(path)
    for kind in ('train', 'eval'):
        its = [r['iter'] for r in rows if r.get('kind') == kind]
        bad = next((i for i in range(1, len(its)) if its[i] <= its[i - 1]), None)
        if bad is not None:
            raise DataError(f"{path} has duplicated or out-of-order {kind} rows (iter {its[bad]} after {its[bad - 1]}): "
                            f"two runs wrote into one out_dir? Retrain it into a fresh out_dir.")
    evals = [r for r in rows if r['kind'] == 'eval']
    if not evals:
        raise DataError(f"{path} has no eval rows yet; train past the first eval_interval first.")
    if any(k not in r for r in evals for k in EVAL_ROW):
        raise DataError(f"{path} has eval rows without {', '.join(EVAL_ROW)}: not written by train.py (or edited).")
    cfg = read_json(os.path.join(run_dir, 'config.json'), 'run config')
    missing = [k for k in RUN_CONFIG if k not in cfg] if isinstance(cfg, dict) else list(RUN_CONFIG)
    if missing:
        raise DataError(f"{run_dir}/config.json lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}: "
                        f"not written by train.py (or edited); retrain the run.")
    bad = [k for k, want in RUN_CONFIG.items() if bad_config_value(cfg[k], want)]
    if bad:
        raise DataError(f"{run_dir}/config.json has {', '.join(f'{k}={cfg[k]!r}' for k in bad)}, which train.py never "
                        f"writes (edited?); retrain the run.")
    last = evals[-1].get('val_loss')
    if not isinstance(last, (int, float)) or not math.isfinite(last):        # (hot/cold may be NaN: no hot position)
        raise DataError(f"{run_dir}'s last eval (iter {evals[-1]['iter']}) has a non-finite val_loss ({last}): the run "
                        f"diverged; it is not averaged into any table.")
    summary = {}
    if os.path.exists(os.path.join(run_dir, 'summary.json')):
        summary = read_json(os.path.join(run_dir, 'summary.json'), 'run summary')
        if not isinstance(summary, dict):
            raise DataError(f"{run_dir}/summary.json is not an object; not written by train.py (or edited).")
    series = [(r['iter'], r['hot_cold_delta']) for r in evals if r['iter'] > 0]   # iter 0: an untrained model's noise, not an advantage
    evolution = [{k: r.get(k) for k in ('iter', 'alpha_hot', 'alpha_cold', 'delta_alpha', 'hot_cold_delta',
                                         'val_loss', 'val_loss_hot', 'val_loss_cold')} for r in evals]
    data = f"{os.path.basename(cfg['data_dir'].rstrip('/'))} ({cfg.get('data_signature', {}).get('tokenizer', '?')})"
    return {'run': os.path.basename(run_dir.rstrip('/')), 'config': config_name(cfg), 'seed': cfg['seed'], 'data': data,
            'data_dir': cfg['data_dir'], 'block_size': cfg['block_size'], 'snapshots': len(snapshot_paths(run_dir)),
            'run_dir': run_dir,
            'val_windows': evals[-1]['n_positions'] // cfg['block_size'],
            'memory': cfg['memory'], 'hot_size': cfg['hot_size'], 'table_size': cfg['table_size'],
            'final': evals[-1], 'flip': flip(series), 'evolution': evolution,
            'tok_per_s': summary.get('tok_per_s_median'), 'params': summary.get('params', {}).get('total'),
            'engram_layers': list(cfg['engram_layers']) if cfg['memory'] != 'none' else [], 'max_iters': cfg['max_iters'],
            'provenance': cfg.get('provenance') or {}}

def data_sections(runs, device='cpu'):
    """The study's data-side sections, per data dir / N_hot / validation set of its runs: the KN data
    baseline (item 2), Algorithm 1's fingerprint false positives (item 1); and the n-gram trajectories of
    every run that kept weight snapshots (item 6)."""
    out = {'baseline': [], 'fingerprints': [], 'trajectories': {}, 'kn_by_size': [], 'frequency': []}
    seen = set()
    for r in runs:
        key = (r['data_dir'], r['hot_size'], r['val_windows'], r['block_size'])
        if key not in seen:
            seen.add(key)
            meta = load_meta(r['data_dir'])
            index, _ = load_index(r['data_dir'], meta, GPTConfig(memory='nine', hot_size=r['hot_size']))
            data = TokenData(r['data_dir'], index.max_order - 1)
            starts = data.val_starts(r['block_size'], r['val_windows'])
            deltas = [q['final']['hot_cold_delta'] for q in runs if (q['data_dir'], q['hot_size']) == key[:2]]
            out['baseline'].append({'data': r['data'], 'hot_size': r['hot_size'], 'val_windows': len(starts),
                                    'model_hot_cold_delta_mean': float(np.mean(deltas)), 'runs': len(deltas),
                                    **data_baseline(data, index, starts, r['block_size'], meta['tokens']['vocab_size'])})
            same = [q for q in runs if (q['data_dir'], q['hot_size'], q['val_windows'], q['block_size']) == key]
            out['frequency'] += [f for f in [frequency_section(same, meta, index, data, starts, device)] if f]
            out['kn_by_size'].append({'data': r['data'], 'hot_size': r['hot_size'], 'val_windows': len(starts),
                                      'rows': kn_share_rows(data, index, r['hot_size'], starts, r['block_size'])})
            fp = cached(r['data_dir'], meta, 'fingerprints', str(r['hot_size']), lambda: fingerprint_analysis(r['data_dir'], meta, r['hot_size']))
            out['fingerprints'] += [{'data': r['data'], 'hot_size': r['hot_size'], **f} for f in fp]
        if r['snapshots'] >= 2:
            out['trajectories'][r['run']] = ngram_trajectories(r['run_dir'])
    return out

@torch.no_grad()
def position_losses(ckpt_path, data, starts, hot_size, device='cpu'):
    """Per-position val loss (flattened B*T) of a checkpoint's model on the windows `starts`, on `device` in the
    precision it was trained in."""
    model, ckpt, _, _ = load_model(ckpt_path, data.dir, hot_size)
    T, bs = model.config.block_size, ckpt['config']['eval_batch_size']
    model.to(device)
    out = []
    for i in range(0, len(starts), bs):
        x, y, prev = to_device(data.windows('val', starts[i:i + bs], T), device)
        with autocast_context('cuda' if device.startswith('cuda') else 'cpu', ckpt['config']['dtype']):
            _, _, info = model(x, y, prev=prev, diag=True)
        out.append(info['loss'].float().reshape(-1).cpu().numpy())
    return np.concatenate(out)

def frequency_section(rs, meta, index, data, starts, device='cpu'):
    """Issue 25 item 5, for the runs `rs` of one data dir / N_hot / validation set (those with a ckpt.pt):
    the val positions by route and by how often their 2-gram was seen in train (unseen vs seen rarely),
    each split by whether the target is copyable from the window; the mean final loss of each config (seed
    mean) and of the KN trigram. None when no run kept a checkpoint."""
    rs = [r for r in rs if os.path.exists(os.path.join(r['run_dir'], 'ckpt.pt'))]
    if not rs:
        return None
    T, hot_size = rs[0]['block_size'], rs[0]['hot_size']
    losses = {'KN trigram': kn_losses(data, starts, T, meta['tokens']['vocab_size'])}
    for name in sorted({r['config'] for r in rs}):
        per_seed = [position_losses(os.path.join(r['run_dir'], 'ckpt.pt'), data, starts, hot_size, device) for r in rs if r['config'] == name]
        losses[name] = np.mean(per_seed, 0)
    return {'data': rs[0]['data'], 'hot_size': hot_size, 'val_windows': len(starts), 'iter': rs[0]['final']['iter'],
            'rows': group_rows(*position_groups(data, index, starts, T), losses), 'models': list(losses)}

def mean_std(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None, None
    return float(np.mean(xs)), (float(np.std(xs, ddof=1)) if len(xs) > 1 else None)

def study(runs):
    groups = {}
    for r in runs:
        groups.setdefault(r['config'], []).append(r)
    table3, table5, layers = {}, {}, {}
    for name, rs in sorted(groups.items()):
        vl, vs = mean_std([r['final']['val_loss'] for r in rs])
        table3[name] = {'seeds': sorted(r['seed'] for r in rs), 'val_loss': vl, 'val_loss_std': vs,
                        'data': ', '.join(sorted({r['data'] for r in rs})), 'val_windows': rs[0]['val_windows'],
                        'hot_cold_delta': mean_std([r['final']['hot_cold_delta'] for r in rs])[0],
                        'tok_per_s': mean_std([r['tok_per_s'] for r in rs])[0], 'params': rs[0]['params'],
                        'iter': rs[0]['final']['iter']}
        if has_hot_tier(rs[0]['memory']):
            table5[name] = {'n_hot': rs[0]['hot_size'], 'hot_coverage': mean_std([r['final']['hot_share'] for r in rs])[0],
                            'flip_iters': [r['flip']['flip_iter'] for r in rs]}
        layers[name] = {f'L{l}': mean_std([r['final'].get(f'delta_alpha_L{l}') for r in rs])[0] for l in rs[0]['engram_layers']}
    flips = {name: flip_summary(rs) for name, rs in sorted(groups.items())}
    return {'table3': table3, 'table4': {r['run']: {'config': r['config'], 'seed': r['seed'], **r['flip']} for r in runs},
            'flip_summary': flips, 'patterns': patterns(flips, groups),
            'table5': table5, 'table6': {r['run']: r['evolution'] for r in runs},
            'table7': {name: rs[0]['final'].get('alpha_buckets') for name, rs in sorted(groups.items())},
            'delta_alpha_per_layer': layers}

def flip_summary(rs):
    """Table 4 over the seeds of one config: how many flipped, the flip iter (and its share of training)
    as mean ± std over the seeds that flipped, the extremes as mean ± std over all seeds."""
    f = [r['flip'] for r in rs]
    its = [x['flip_iter'] for x in f if x['flip_iter'] is not None]
    last = rs[0]['engram_layers'][-1] if rs[0]['engram_layers'] else None
    post = [r['final'].get('delta_alpha') for r in rs if r['flip']['flip_iter'] is not None]
    return {'seeds': len(rs), 'flipped': len(its), 'flip_iters': [x['flip_iter'] for x in f],
            'flip_iter': mean_std(its), 'flip_frac': mean_std([i / rs[0]['max_iters'] for i in its]),
            'max_hot_advantage': mean_std([x['max_hot_advantage'] for x in f]),
            'max_cold_advantage': mean_std([x['max_cold_advantage'] for x in f]),
            'post_flip_delta_alpha': mean_std(post), 'memory': rs[0]['memory'], 'hot_size': rs[0]['hot_size'],
            'deepest_layer': last, 'deepest_delta_alpha': mean_std([r['final'].get(f'delta_alpha_L{last}') for r in rs])}

T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)   # t_0.975(df)

def compare(a, b, n_a, n_b=None):
    """a - b from (mean, std) pairs over n_a / n_b seeds (n_b None: b is a constant, a one-sample test): Welch's
    t-test at the Welch-Satterthwaite degrees of freedom (rounded down), two-sided 5%: 'greater' / 'less', else
    'unresolved'; 'unresolved' too when a side has one seed (no spread to test against); None when a side has no value."""
    if a[0] is None or b[0] is None:
        return None
    if n_a < 2 or (n_b is not None and n_b < 2):
        return 'unresolved'
    va, vb = (a[1] or 0) ** 2 / n_a, ((b[1] or 0) ** 2 / n_b if n_b else 0.0)
    d, se = a[0] - b[0], math.sqrt(va + vb)
    if se == 0:
        return 'greater' if d > 0 else 'less' if d < 0 else 'unresolved'
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + (vb ** 2 / (n_b - 1) if n_b else 0.0))
    crit = T975[min(max(int(df), 1), len(T975)) - 1]
    return 'greater' if d / se > crit else 'less' if d / se < -crit else 'unresolved'

VERDICT = {True: 'reproduced', False: 'contradicted', None: 'not resolved'}

def patterns(flips, groups):
    """The paper's patterns (§5.2-5.5) tested on these runs, each with a verdict: reproduced /
    contradicted / not resolved at this many seeds (compare: a t-test at the seeds' degrees of freedom; one seed
    resolves nothing) / not testable."""
    nine = {n: f for n, f in flips.items() if f['memory'] == 'nine'}
    hashes = {n: f for n, f in flips.items() if f['memory'] == 'hash'}
    out = []

    def add(name, paper_says, ours, verdict):
        out.append({'pattern': name, 'paper': paper_says, 'ours': ours, 'verdict': verdict})
    if flips:
        n_runs, n_flip = sum(f['seeds'] for f in flips.values()), sum(f['flipped'] for f in flips.values())
        never = [n for n, f in flips.items() if f['flipped'] == 0 and f['seeds'] >= 2]
        add('1. every config flips', 'all 5 configs flip', f"{n_flip} of {n_runs} runs flip; configs that never flip over 2+ seeds: {', '.join(never) or 'none'}",
            VERDICT[False if never else True if n_flip == n_runs and all(f['seeds'] >= 2 for f in flips.values()) else None])
                                                                                # a flip counts once seen in 2+ seeds
    for nn, hn in (('nine_100_400k', 'hash_500k'),):
        if nn in nine and hn in hashes:
            a, b = nine[nn], hashes[hn]
            if not a['flipped'] or not b['flipped']:
                add(f'2. {nn} flips earlier than {hn}', 'Nine iter 2000-2750 < Hash 3000', f"flips: {nn} {a['flipped']}/{a['seeds']}, {hn} {b['flipped']}/{b['seeds']}", 'not testable (no flip)')
            else:
                c = compare(b['flip_iter'], a['flip_iter'], b['flipped'], a['flipped'])
                add(f'2. {nn} flips earlier than {hn}', 'Nine iter 2000-2750 < Hash 3000',
                    f"{fmt_ms(a['flip_iter'], ',.0f')} vs {fmt_ms(b['flip_iter'], ',.0f')}", VERDICT[{'greater': True, 'less': False}.get(c)])
                c = compare(a['max_cold_advantage'], b['max_cold_advantage'], a['seeds'], b['seeds'])
                add(f'3. {nn} post-flip cold advantage > {hn}', 'Nine +0.10 to +0.17 > Hash +0.07 to +0.08',
                    f"{fmt_ms(a['max_cold_advantage'], '+.3f')} vs {fmt_ms(b['max_cold_advantage'], '+.3f')}", VERDICT[{'greater': True, 'less': False}.get(c)])
    flipped = {n: f for n, f in flips.items() if f['flipped'] and f['memory'] != 'none'}
    if flipped:
        signs = [compare(f['post_flip_delta_alpha'], (0.0, 0.0), f['flipped']) for f in flipped.values()]
        add('4. α_hot > α_cold persists after the flip', 'Δα > 0 at every eval after the flip',
            ', '.join(f"{n} {fmt_ms(f['post_flip_delta_alpha'], '+.3f')} ({f['flipped']} seeds)" for n, f in flipped.items()), sign_verdict(signs, 'greater'))
    else:
        add('4. α_hot > α_cold persists after the flip', 'Δα > 0 at every eval after the flip', 'no run flips', 'not testable (no flip)')
    if len(nine) >= 2:
        by_size = sorted(nine.values(), key=lambda f: f['hot_size'])
        means = [f['flip_iter'][0] for f in by_size]
        ours = ', '.join(f"N_hot {f['hot_size']:,}: {fmt_ms(f['flip_iter'], ',.0f')} ({f['flipped']}/{f['seeds']})" for f in by_size)
        if any(m is None for m in means):
            add('Table 5: smaller N_hot flips earlier', '20K: 2000 < 50K: 2250 < 100K: 2750', ours, 'not testable (no flip)')
        else:
            pairs = [compare(b['flip_iter'], a['flip_iter'], b['flipped'], a['flipped']) for a, b in zip(by_size, by_size[1:])]
            add('Table 5: smaller N_hot flips earlier', '20K: 2000 < 50K: 2250 < 100K: 2750', ours,
                VERDICT[True if all(c == 'greater' for c in pairs) else False if any(c == 'less' for c in pairs) else None])
    if len(nine) >= 2:
        by_size = sorted(nine.values(), key=lambda f: f['hot_size'])
        pairs = [compare(a['max_hot_advantage'], b['max_hot_advantage'], a['seeds'], b['seeds']) for a, b in zip(by_size, by_size[1:])]
        add('Table 4: a larger N_hot has a larger max hot advantage', '20K −0.154, 50K −0.196, 100K −0.251',
            ', '.join(f"N_hot {f['hot_size']:,}: {fmt_ms(f['max_hot_advantage'], '+.3f')}" for f in by_size),
            VERDICT[True if all(c == 'greater' for c in pairs) else False if any(c == 'less' for c in pairs) else None])
    if nine:
        vals = {n: f['deepest_delta_alpha'] for n, f in list(nine.items()) + list(hashes.items())}
        signs = [compare(f['deepest_delta_alpha'], (0.0, 0.0), f['seeds']) for f in nine.values()]
        add('§5.5: Nine\'s deepest Engram layer prefers cold', 'layer 6: Δα ≈ −0.06 for every Nine, > 0 for Hash-300K/500K',
            ', '.join(f"{n} L{flips[n]['deepest_layer']} {fmt_ms(v, '+.3f')}" for n, v in vals.items()), sign_verdict(signs, 'less'))
    return out

def sign_verdict(signs, expected):
    """Every config's one-sample test has the paper's sign: reproduced; any has the other sign: contradicted."""
    signs = [c for c in signs if c is not None]
    if not signs:
        return VERDICT[None]
    return VERDICT[True if all(c == expected for c in signs) else False if any(c not in (expected, 'unresolved') for c in signs) else None]

def fmt_ms(ms, spec):
    """mean ± std (the std without the mean's sign)."""
    return f"{fmt(ms[0], spec)} ± {fmt(ms[1], spec.lstrip('+'))}" if ms[1] is not None else fmt(ms[0], spec)

# -----------------------------------------------------------------------------
# Markdown

def fmt(x, spec=None):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '–'
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return format(x, spec or ('d' if isinstance(x, int) else '.4f'))

def diff(ours, theirs, spec='+.4f'):
    return fmt(ours - theirs, spec) if ours is not None and theirs is not None else '–'

def md_table(header, rows):
    return '\n'.join(['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] +
                     ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]) + '\n'

def md_buckets(buckets, ref=None, ref_name='paper'):
    """α buckets; the paper's columns only beside the config that has them (ref)."""
    rows = []
    for i, b in enumerate(buckets or []):
        row = [f"[{b['lo']:.1f}, {b['hi']:.1f}{']' if b['hi'] == 1.0 else ')'}", fmt(b['mean_loss']), fmt(b['hot_share'], '.1%'), f"{b['count']:,}"]
        rows.append(row + ([fmt(ref[i]['mean_loss'], '.2f'), fmt(ref[i]['hot_share'], '.1%')] if ref else []))
    return md_table(['α range', 'mean loss', 'hot share', 'count'] + ([f'{ref_name} loss', f'{ref_name} hot share'] if ref else []), rows)

def md_checkpoint(rep):
    m, ref = rep['metrics'], paper()
    out = [f"# Stratified evaluation: {rep['config']} @ iter {rep['iter']}\n",
           f"checkpoint `{rep['ckpt']}`, memory `{rep['memory']}`, is_hot from N_hot={rep['hot_size']}, "
           f"{rep['val_windows']} validation windows ({m['n_positions']:,} positions)\n",
           md_table(['val_loss', 'val_loss_hot', 'val_loss_cold', 'hot_cold_delta', 'hot share'] +
                    [f'hot share o{o}' for o in (2, 3) if f'hot_share_o{o}' in m],
                    [[fmt(m['val_loss']), fmt(m['val_loss_hot']), fmt(m['val_loss_cold']), fmt(m['hot_cold_delta'], '+.4f'),
                      fmt(m['hot_share'], '.1%')] + [fmt(m[f'hot_share_o{o}'], '.1%') for o in (2, 3) if f'hot_share_o{o}' in m]])]
    if 'alpha_hot' in m:
        layers = sorted({k.split('_L')[1] for k in m if k.startswith('alpha_hot_L')}, key=int)
        out.append('\n## Gate by layer (α_hot, α_cold, Δα)\n')
        out.append(md_table(['layer', 'α_hot', 'α_cold', 'Δα'],
                            [[f'L{l}', fmt(m[f'alpha_hot_L{l}'], '.3f'), fmt(m[f'alpha_cold_L{l}'], '.3f'),
                              fmt(m[f'delta_alpha_L{l}'], '+.3f')] for l in layers] +
                            [['mean', fmt(m['alpha_hot'], '.3f'), fmt(m['alpha_cold'], '.3f'), fmt(m['delta_alpha'], '+.3f')]]))
        same = rep.get('config') == ref['table7']['config']       # the paper's Table 7 is one config's: beside that one only
        out.append(f"\n## α buckets, layer-mean α" + (f" (beside the paper's Table 7, {ref['table7']['config']})\n" if same else
                   f"\n\nThe paper's Table 7 is {ref['table7']['config']}'s; this is {rep.get('config')} ({rep['memory']}), so it "
                   f"stands alone.\n"))
        out.append(md_buckets(m['alpha_buckets'], *((ref['table7']['buckets'], f"paper {ref['table7']['config']}") if same else ())))
        for l in layers:
            out.append(f'\n### α buckets, layer {l}\n')
            out.append(md_buckets(m[f'alpha_buckets_L{l}']))
    if rep.get('data_baseline'):
        b = rep['data_baseline']
        out.append(f"\n## The data's own hot/cold gap (Kneser-Ney trigram baseline; the model's hot − cold: "
                   f"{fmt(m['hot_cold_delta'], '+.4f')})\n")
        out.append(md_data_baseline([{**b, 'data': os.path.basename(rep['data_dir'].rstrip('/')), 'hot_size': rep['hot_size'],
                                      'val_windows': rep['val_windows'], 'model_hot_cold_delta_mean': m['hot_cold_delta']}]))
    if rep.get('collisions'):
        out.append('\n## Collision statistics (training n-grams; expectation under uniform hashing)\n')
        out.append(md_table(['order', 'head', 'table', 'keys', 'slots used (exp.)', 'keys/used slot (exp.)',
                             'positions colliding in all heads (exp.)'],
                            [[c['order'], c['head'], f"{c['table_size']:,}", f"{c['keys']:,}",
                              f"{c['slots_used']:,} ({c['slots_used_expected']:,.0f})",
                              f"{fmt(c['keys_per_used_slot'], '.3f')} ({fmt(c['keys_per_used_slot_expected'], '.3f')})",
                              f"{fmt(c['positions_colliding_all_heads'], '.2%')} ({fmt(c['positions_colliding_all_heads_expected'], '.2%')})"]
                             for c in rep['collisions']]))
    return '\n'.join(out)

def md_data_baseline(rows):
    return md_table(['data', 'N_hot', 'val windows', 'KN loss', 'KN hot', 'KN cold', 'KN hot − cold', 'model hot − cold (runs)',
                     'next-token entropy hot', 'cold', 'hot − cold', 'contexts seen hot / cold'],
                    [[b['data'], f"{b['hot_size']:,}", b['val_windows'], fmt(b['kn_loss']), fmt(b['kn_loss_hot']), fmt(b['kn_loss_cold']),
                      fmt(b['kn_hot_cold_delta'], '+.4f'), f"{fmt(b.get('model_hot_cold_delta_mean'), '+.4f')} ({b.get('runs', 1)})",
                      fmt(b['entropy_hot']), fmt(b['entropy_cold']), fmt(b['entropy_hot_cold_delta'], '+.4f'),
                      f"{b['context_seen_share_hot']:.1%} / {b['context_seen_share_cold']:.1%}"] for b in rows])

def md_data_side(d):
    out = ['\n## How much of hot_cold_delta is the data?\n\nAn interpolated Kneser-Ney trigram LM counted on the '
           'train split (no memory, no training dynamics) scored on the same validation positions, split by the same '
           'is_hot labels; and the plug-in entropy of the next token after each position\'s 2-token context in the train '
           'counts (biased low for rarely seen contexts, which are mostly cold). A positive KN hot − cold means frequent '
           'contexts are harder to continue in the data itself.\n\n', md_data_baseline(d['baseline'])]
    if d['fingerprints']:
        orders = sorted({k[len('fp_rate_o'):] for f in d['fingerprints'] for k in f if k.startswith('fp_rate_o')})
        out += ['\n## Algorithm 1 as written: b-bit fingerprint membership\n\nShare of non-member queries that '
                'pass the fingerprint check (so are routed hot: false positives), beside 2^-b, and the hot coverage '
                '(any order) with them. Runs with `hot_fingerprint_bits` appear in Table 3 for their loss.\n\n',
                md_table(['data', 'N_hot', 'b', 'split'] + [f'FP rate o{o}' for o in orders] + ['expected 2^-b', 'hot coverage exact', 'with FP'],
                         [[f['data'], f"{f['hot_size']:,}", f['bits'], f['split']] + [f"{f[f'fp_rate_o{o}']:.2e}" for o in orders] +
                          [f"{f['expected_fp_rate']:.2e}", fmt(f['hot_coverage_exact'], '.2%'), fmt(f['hot_coverage_fp'], '.2%')]
                          for f in d['fingerprints']])]
    for k in d.get('kn_by_size', []):
        out += [f"\n## The data's own flip? KN trigram counted on random shares of train documents ({k['data']}, N_hot {k['hot_size']:,})\n\n"
                "The same val positions and is_hot labels; only the counts change: each share is drawn as random *documents* "
                "of the train split (seeded draws; mean ± std, min..max over them), not the first share of the stream, which "
                "measures where the counted text sits as much as how much of it there is. A sign change of KN hot − cold "
                "beyond the draws' spread is a flip without any model: rare contexts need data before their low entropy shows. "
                "Figure `delta_vs_loss.png` puts every model eval on the same axes (hot − cold against val loss).\n\n",
                md_table(['share of train documents', 'draws', 'train tokens (mean)', 'KN loss (mean)', 'KN hot − cold', 'min .. max'],
                         [[fmt(r['train_frac'], '.1%'), r['draws'], f"{r['train_tokens']:,}", fmt(r['kn_loss']),
                           fmt_ms((r['kn_hot_cold_delta'], r['kn_hot_cold_delta_std']), '+.4f'),
                           f"{fmt(r['kn_hot_cold_delta_min'], '+.3f')} .. {fmt(r['kn_hot_cold_delta_max'], '+.3f')}"] for r in k['rows']])]
    for fr in d.get('frequency', []):
        out += [f"\n## Which positions are hard? Val positions by route and 2-gram train count ({fr['data']}, N_hot {fr['hot_size']:,}, "
                f"{fr['val_windows']} windows, final iter {fr['iter']})\n\nCold positions split by how often their 2-gram (the memory's key) "
                "occurs in the train split: unseen vs seen rarely. Copyable: the target follows the same token earlier in the window "
                "(an induction head can copy it). Mean final loss per group: each config's seed mean, and the KN trigram data baseline."
                + (f" Groups without a position here are left out: {', '.join(empty)}." if (empty := [
                    f"{r['group']} ({r['targets']})" for r in fr['rows'] if not r['share']]) else '') + "\n\n",
                md_table(['group', 'targets', 'share of positions'] + fr['models'],
                         [[r['group'], r['targets'], fmt(r['share'], '.1%')] + [fmt(r[m], '.3f') for m in fr['models']]
                          for r in fr['rows'] if r['share']])]
    for run, traj in d['trajectories'].items():
        out += [f'\n## N-gram embedding trajectories: {run}\n\n', md_trajectories(traj)]
    return out

def at_iter(v, it, missing):
    return f"{fmt(v, '+.3f')} (iter {fmt(it)})" if v is not None else f"none ({missing})"

def paper_table(headers, rows, names, ref_rows, what):
    """A table with its 'paper' (and 'Δ') columns where one of its configs has a paper counterpart; otherwise
    those columns go, and a sentence says the paper has no such row (not a column of dashes)."""
    if any(n in ref_rows for n in names):
        return md_table(headers, rows)
    keep = [i for i, h in enumerate(headers) if h not in ('paper', 'Δ')]
    return (f"No paper counterpart: the paper's {what} has rows for {', '.join(sorted(ref_rows))} only, "
            f"and these configs are none of them.\n\n" + md_table([headers[i] for i in keep], [[r[i] for i in keep] for r in rows]))

def md_provenance(runs):
    """What made the runs: one row per distinct (commit, versions, device, processes), with its runs."""
    groups = {}
    for r in runs:
        p = r['provenance']
        commit = (p.get('git_commit') or 'unknown')[:10] + (' (+ changes)' if p.get('git_dirty') else '')
        key = (commit, p.get('torch', '?'), p.get('cuda') or '–', p.get('device', '?'), p.get('world_size', '?'))
        groups.setdefault(key, []).append(r['run'])
    return ('\n## Provenance\n\nThe code, libraries and machine of each run (from its config.json); runs made by '
            'different code are not strictly comparable.\n\n' +
            md_table(['commit', 'torch', 'CUDA', 'device', 'processes', 'runs'],
                     [[*k, ', '.join(v)] for k, v in groups.items()]))

def md_study(s):
    ref = paper()
    out = ['# Engram-Nine study report\n', 'Paper numbers: 95M FineWeb-Edu tokens, DeepSeek-V3 tokenizer, 5000 iters. '
           'Differences are ours − paper; they are only meaningful at the paper\'s scale.\n']
    if s.get('skipped'):
        out.append('\n**Skipped runs** (not in any table):\n\n' + '\n'.join(f"- `{d}`: {e}" for d, e in s['skipped'].items()) + '\n')
    datas = sorted({t['data'] for t in s['table3'].values()})
    if len(datas) > 1:
        out.append(f"\n**Warning: these runs were trained on different data ({'; '.join(datas)}); their losses are not comparable.**\n")
    out.append(md_provenance(s['runs']))
    out.append('\n## Table 3: final validation loss across seeds\n')
    rows = []
    for name, t in s['table3'].items():
        p = ref['table3'].get(name, {})
        rows.append([name, t['data'], t['val_windows'], len(t['seeds']), t['iter'],
                     fmt(t['val_loss']) + (f" ± {fmt(t['val_loss_std'])}" if len(t['seeds']) > 1 else ''),
                     fmt(p.get('val_loss')), diff(t['val_loss'], p.get('val_loss')), fmt(t['hot_cold_delta'], '+.4f'),
                     fmt(p.get('hot_cold_delta'), '+.2f'), fmt(t['tok_per_s'], ',.0f'), fmt(p.get('tok_per_s')),
                     fmt(t['params'], ','), fmt(p.get('params'), ',')])
    out.append(paper_table(['config', 'data', 'val windows', 'seeds', 'iter', 'val_loss', 'paper', 'Δ', 'hot_cold_delta', 'paper',
                            'tok/s', 'paper', 'params', 'paper'], rows, s['table3'], ref['table3'], 'Table 3'))
    out.append('\n## Table 4: hot/cold flip\n\nWithout a flip ("none"), the extremes are taken over the whole run. Advantages are '
               'values of val_loss_hot − val_loss_cold, signed as the paper prints them: a hot advantage is negative (hot '
               'positions lower), a cold advantage positive.\n\n')
    rows = []
    for run, f in s['table4'].items():
        p = ref['table4'].get(f['config'], {})
        rows.append([run, f['config'], fmt(f['flip_iter']) if f['flip_iter'] is not None else 'none', fmt(p.get('flip_iter')),
                     at_iter(f['max_hot_advantage'], f['max_hot_advantage_iter'], 'never < 0'),
                     f"{fmt(p.get('max_hot_advantage'), '+.3f')} (iter {fmt(p.get('max_hot_advantage_iter'))})",
                     at_iter(f['max_cold_advantage'], f['max_cold_advantage_iter'], 'never > 0'),
                     f"{fmt(p.get('max_cold_advantage'), '+.3f')} (iter {fmt(p.get('max_cold_advantage_iter'))})"])
    out.append(paper_table(['run', 'config', 'flip iter', 'paper', 'max hot advantage (pre-flip)', 'paper',
                            'max cold advantage (post-flip)', 'paper'], rows, [f['config'] for f in s['table4'].values()],
                           ref['table4'], 'Table 4'))
    out.append('\n## Table 4 across seeds\n\nFlip iter and its share of training: mean ± std over the seeds that flipped; '
               'extremes: mean ± std over all seeds. The paper\'s share is its flip iter / 5000.\n\n')
    rows = []
    for name, f in s['flip_summary'].items():
        p = ref['table4'].get(name, {})
        rows.append([name, f"{f['flipped']}/{f['seeds']}", fmt_ms(f['flip_iter'], ',.0f') if f['flipped'] else 'none',
                     fmt(p.get('flip_iter')), fmt_ms(f['flip_frac'], '.0%') if f['flipped'] else 'none', fmt(p['flip_iter'] / 5000, '.0%') if p.get('flip_iter') else '–',
                     fmt_ms(f['max_hot_advantage'], '+.3f'), fmt(p.get('max_hot_advantage'), '+.3f'),
                     fmt_ms(f['max_cold_advantage'], '+.3f'), fmt(p.get('max_cold_advantage'), '+.3f')])
    out.append(paper_table(['config', 'flipped', 'flip iter', 'paper', 'share of training', 'paper', 'max hot advantage',
                            'paper', 'max cold advantage', 'paper'], rows, s['flip_summary'], ref['table4'], 'Table 4'))
    if s['patterns']:
        out.append('\n## The paper\'s patterns, tested\n\nReproduced / contradicted when a two-sided Welch t-test over the seeds '
                   '(5%, at the Welch-Satterthwaite degrees of freedom; against 0 for a sign) says so; not resolved otherwise, '
                   'and always with one seed.\n\n')
        out.append(md_table(['pattern', 'paper', 'ours (mean ± std over seeds)', 'verdict'],
                            [[p['pattern'], p['paper'], p['ours'], f"**{p['verdict']}**"] for p in s['patterns']]))
    if s['table5']:
        out.append('\n## Table 5: N_hot ablation\n\nHot coverage of the eval windows (the positions every loss here is '
                   'measured on; prepare_fineweb.py prints the whole val split\'s, which differs when the windows are few).\n\n')
        out.append(paper_table(['config', 'N_hot', 'hot coverage (eval windows)', 'paper', 'flip iters', 'paper'],
                               [[n, t['n_hot'], fmt(t['hot_coverage'], '.1%'), fmt(ref['table5'].get(n, {}).get('hot_coverage'), '.0%'),
                                 ', '.join(fmt(i) for i in t['flip_iters'] if i is not None) or 'none',
                                 fmt(ref['table5'].get(n, {}).get('flip_iter'))]
                                for n, t in s['table5'].items()], s['table5'], ref['table5'], 'Table 5'))
    out += md_data_side(s['data_side'])
    out.append('\n## Table 6: α_hot / α_cold evolution\n')
    for run, rows in s['table6'].items():
        out.append(f'\n### {run}\n')
        out.append(md_table(['iter', 'α_hot', 'α_cold', 'Δα', 'loss_hot − loss_cold'],
                            [[r['iter'], fmt(r['alpha_hot'], '.3f'), fmt(r['alpha_cold'], '.3f'), fmt(r['delta_alpha'], '+.3f'),
                              fmt(r['hot_cold_delta'], '+.4f')] for r in rows]))
    out.append('\n(paper, Nine-100K seed 0: ' + '; '.join(f"iter {r['iter']}: {r['alpha_hot']}/{r['alpha_cold']}, delta {r['hot_cold_delta']:+}"
                                                          for r in ref['table6']['rows']) + ')\n')
    out.append('\n## Table 7: α buckets at the final eval (layer-mean α)\n')
    for name, b in s['table7'].items():
        if b:
            out.append(f'\n### {name}\n')
            out.append(md_buckets(b, ref['table7']['buckets'] if name == ref['table7']['config'] else None,
                                  f"paper {ref['table7']['config']}"))
    if ref['table7']['config'] not in s['table7']:
        out.append(f"\n(The paper's Table 7 is {ref['table7']['config']}'s, not among these configs: " + '; '.join(
            f"[{b['lo']:.1f}, {b['hi']:.1f}): loss {b['mean_loss']}, hot {b['hot_share']:.1%}" for b in ref['table7']['buckets']) + ')\n')
    out.append('\n## Figure 4: per-layer Δα = α_hot − α_cold at the final eval\n')
    layer_names = sorted({l for v in s['delta_alpha_per_layer'].values() for l in v}, key=lambda x: int(x[1:]))
    out.append(md_table(['config'] + layer_names, [[n] + [fmt(v.get(l), '+.3f') for l in layer_names]
                                                   for n, v in s['delta_alpha_per_layer'].items() if v]))
    return '\n'.join(out)

# -----------------------------------------------------------------------------
# figures (matplotlib, Agg)

def figure_flip(plt, runs, s, color, out_dir):
    """Figure 2 against the share of training, so runs of any length sit beside the paper's Table 4
    (its extremes and flip at iter / 5000): per config the seed mean ± std, each seed thin, its flips dotted."""
    ref = paper()['table4']
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = {}
    for r in runs:
        groups.setdefault(r['config'], []).append(r)
    for name, rs in sorted(groups.items()):
        c = color[name]
        for r in rs:
            ev = [e for e in r['evolution'] if e['iter'] > 0]
            ax.plot([e['iter'] / r['max_iters'] for e in ev], [e['hot_cold_delta'] for e in ev], color=c, lw=0.5, alpha=0.5)
            if r['flip']['flip_iter'] is not None:
                ax.axvline(r['flip']['flip_iter'] / r['max_iters'], color=c, ls=':', lw=1)
        its = sorted(set.intersection(*({e['iter'] for e in r['evolution'] if e['iter'] > 0} for r in rs)))
        d = np.array([[{e['iter']: e['hot_cold_delta'] for e in r['evolution']}[i] for i in its] for r in rs])
        x = np.array(its) / rs[0]['max_iters']
        ax.plot(x, d.mean(0), color=c, lw=2, label=f"{name}: mean of {len(rs)} seed(s)" + (" ± std" if len(rs) > 1 else ''))
        if len(rs) > 1:
            ax.fill_between(x, d.mean(0) - d.std(0, ddof=1), d.mean(0) + d.std(0, ddof=1), color=c, alpha=0.15)
        p = ref.get(name)
        if p:
            ax.plot([p['max_hot_advantage_iter'] / 5000, p['flip_iter'] / 5000, p['max_cold_advantage_iter'] / 5000],
                    [p['max_hot_advantage'], 0, p['max_cold_advantage']], color=c, ls='--', marker='D', ms=6,
                    label=f"paper {name}: Table 4 (max hot adv., flip, max cold adv.)")
    ax.axhline(0, color='k', lw=0.8)
    flipped = any(r['flip']['flip_iter'] is not None for r in runs)
    ax.set(xlabel='share of training (iter / max_iters; paper: iter / 5000)', ylabel='val_loss_hot − val_loss_cold (nats)',
           title='Hot/cold gap over training (as Fig. 2)' + ('' if any(ref.get(n) for n in groups) else ', no paper counterpart')
           + ('; dotted: a seed\'s flip' if flipped else '; no run flips'))
    ax.legend(fontsize=6)
    return save_fig(fig, out_dir, 'fig2_hot_cold_delta.png')

def figures(runs, s, out_dir):
    plt = pyplot()
    names = sorted({r['config'] for r in runs} | set(s['table7']))
    color = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    paths = []

    if runs:
        paths.append(figure_flip(plt, runs, s, color, out_dir))

    kn = s.get('data_side', {}).get('kn_by_size', [])
    if runs and kn:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        labelled = set()
        for r in runs:
            ev = [e for e in r['evolution'] if e['iter'] > 0]
            first = r['config'] not in labelled
            labelled.add(r['config'])
            ax.plot([e['val_loss'] for e in ev], [e['hot_cold_delta'] for e in ev], color=color[r['config']], marker='.', lw=0.8,
                    label=f"{r['config']}: every eval of its {sum(q['config'] == r['config'] for q in runs)} seed(s)" if first else None)
        for i, k in enumerate(kn):             # one grey and marker per N_hot: the labellings differ, the counts do not
            ax.plot([x['kn_loss'] for x in k['rows']], [x['kn_hot_cold_delta'] for x in k['rows']], '--', color=str(0.55 * i / max(1, len(kn) - 1)),
                    marker='sD^v'[i % 4],
                    label=f"KN trigram on random shares of train documents, mean of the draws (N_hot {k['hot_size']:,})")
        ax.axhline(0, color='k', lw=0.8)
        ax.invert_xaxis()
        ax.set(xlabel='val loss (nats; training progresses to the right)', ylabel='val_loss_hot − val_loss_cold',
               title='Hot − cold gap against progress: models vs the data (KN)')
        ax.legend(fontsize=6)
        paths.append(save_fig(fig, out_dir, 'delta_vs_loss.png'))

    buckets = {n: b for n, b in s['table7'].items() if b}
    if buckets:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        w = 0.8 / len(buckets)
        for i, (n, b) in enumerate(buckets.items()):
            x = np.arange(len(b)) + i * w
            a1.bar(x, [v['mean_loss'] if v['count'] else 0 for v in b], w, color=color[n], label=n)
            a2.bar(x, [v['hot_share'] if v['count'] else 0 for v in b], w, color=color[n], label=n)
        labels = [f"{v['lo']:.1f}–{v['hi']:.1f}" for v in next(iter(buckets.values()))]
        for a, t, y in ((a1, '(a) mean loss by α bucket', 'mean loss (nats)'), (a2, '(b) hot share by α bucket', 'share of positions that are hot')):
            a.set_xticks(np.arange(len(labels)) + 0.4 - w / 2, labels)
            a.set(xlabel='α (layer mean)', ylabel=y, title=t)
        a1.legend(fontsize=7)
        paths.append(save_fig(fig, out_dir, 'fig3_alpha_buckets.png'))

    layers = {n: v for n, v in s['delta_alpha_per_layer'].items() if v}
    if layers:
        fig, ax = plt.subplots(figsize=(7, 4))
        lnames = sorted({l for v in layers.values() for l in v}, key=lambda x: int(x[1:]))
        w = 0.8 / len(layers)
        for i, (n, v) in enumerate(layers.items()):
            vals = [v.get(l) or 0.0 for l in lnames]
            bars = ax.bar(np.arange(len(lnames)) + i * w, vals, w, color=color[n], label=n)
            for b, val in zip(bars, vals):
                if val < 0:
                    b.set_hatch('//')
        ax.axhline(0, color='k', lw=0.8)
        ax.set_xticks(np.arange(len(lnames)) + 0.4 - w / 2, lnames)
        hatched = any((v.get(l) or 0.0) < 0 for v in layers.values() for l in lnames)
        ax.set(xlabel='Engram layer', ylabel='Δα = α_hot − α_cold',
               title='Per-layer gate preference (Fig. 4)' + ('; hatched: prefers cold' if hatched else '; every layer prefers hot'))
        ax.legend(fontsize=7)
        paths.append(save_fig(fig, out_dir, 'fig4_delta_alpha_layers.png'))

    for run, traj in list(s.get('data_side', {}).get('trajectories', {}).items())[:1]:
        paths += figure_trajectories(traj, run, out_dir)

    if any(r['evolution'][0].get('alpha_hot') is not None for r in runs):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for r in runs:
            if r['evolution'][0].get('alpha_hot') is None:
                continue
            it = [e['iter'] for e in r['evolution']]
            ax.plot(it, [e['alpha_hot'] for e in r['evolution']], color=color[r['config']], label=f"{r['config']} s{r['seed']} hot")
            ax.plot(it, [e['alpha_cold'] for e in r['evolution']], color=color[r['config']], ls='--', label=f"{r['config']} s{r['seed']} cold")
        ax.set(xlabel='iter', ylabel='mean α', title='α_hot (solid) and α_cold (dashed) over training (Table 6)')
        ax.legend(fontsize=6, ncol=2)
        paths.append(save_fig(fig, out_dir, 'alpha_evolution.png'))
    return paths

def pyplot():
    """matplotlib without a display (Agg), imported only when a figure is drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt

def save_fig(fig, out_dir, name):
    plt = pyplot()
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=110, metadata={'Software': None}))
    plt.close(fig)
    return path

CONSOLE_SECTIONS = ('Table 3', "The paper's patterns", 'Stratified metrics')   # what the console shows of a report

def console_summary(md):
    """The report's headline sections for the console (the whole report is in report.md): a study's Table 3 and the
    patterns' verdicts, a checkpoint's metrics; the first section when none of them is there."""
    sections = md.split('\n## ')
    keep = [x for x in sections[1:] if x.startswith(CONSOLE_SECTIONS)] or sections[1:2]
    return sections[0].rstrip() + ''.join('\n\n## ' + x.rstrip() for x in keep)

def write_report(report, markdown, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    save_json(os.path.join(out_dir, 'report.json'), report)
    atomic_write(os.path.join(out_dir, 'report.md'), lambda f: f.write(markdown), mode='w')

def report_run_id(out_dir):
    """The wandb run id of a report dir: made once and kept in the dir, so writing the report again resumes its run
    (one run per report dir; re-running the quickstart no longer adds a run to upload)."""
    import uuid
    path = os.path.join(out_dir, 'wandb_run_id')
    if os.path.exists(path):
        with open(regular_file(path, 'wandb run id')) as f:
            run_id = f.read().strip()
        if run_id.isalnum():
            return run_id
    run_id = uuid.uuid4().hex[:12]
    atomic_write(path, lambda f: f.write(run_id + '\n'), mode='w')
    return run_id

def log_wandb(report, images, project, out_dir):
    import wandb
    name = os.path.basename(out_dir.rstrip('/'))
    run = wandb.init(project=project, name=name, job_type='eval', config={'report': name}, id=report_run_id(out_dir),
                     resume='allow')
    if 'table3' in report:
        cols = ['config', 'val_loss', 'val_loss_std', 'hot_cold_delta', 'tok_per_s', 'params']
        run.log({'table3': wandb.Table(columns=cols, data=[[n] + [t[c] for c in cols[1:]] for n, t in report['table3'].items()]),
                 'table4': wandb.Table(columns=['run', 'config', 'flip_iter', 'max_hot_advantage', 'max_cold_advantage'],
                                       data=[[r, f['config'], f['flip_iter'], f['max_hot_advantage'], f['max_cold_advantage']]
                                             for r, f in report['table4'].items()])})
        for n, t in report['table3'].items():
            run.summary[f'{n}/val_loss'] = t['val_loss']
    else:
        run.summary.update({k: v for k, v in report['metrics'].items() if isinstance(v, float)})
    run.log({os.path.basename(p)[:-4]: wandb.Image(p) for p in images})
    run.finish()

# -----------------------------------------------------------------------------

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
            runs, skipped = [], {}
            for d in tqdm(dirs, desc='runs'):
                try:
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
