"""
A study's run dirs read back (config.json, metrics.jsonl, summary.json; a damaged one is skipped) and the
data-side sections computed for them.
"""
import hashlib
import math
import os

import numpy as np
import torch

from factory import EXTENDED, data_signature, load_model, tier_index
from engramlib.data import DataError, TokenData, load_meta, read_metrics, to_device
from report.databaseline import cached, data_baseline, fingerprint_analysis, group_rows, kn_losses, kn_share_rows, position_groups
from engramlib.fsafe import lock_holder
from engramlib.metrics import flip
from model import GPTConfig
from report.inputs import EVAL_ROW, RUN_CONFIG, bad_config_value, config_name, read_json, snapshot_paths
from report.stability import ngram_trajectories
from engramlib.system import autocast_context

# what the study reads from a run's config.json, each with its test (a bad run is skipped with the reason, not a crash)


def run_identity(run_dir):
    """What a run is, not how a glob reached it: the sha256 of its metrics.jsonl (a link to a run dir and a copy of
    one give the same; two seeds, or two configs, never do)."""
    path = own_file(run_dir, 'metrics.jsonl')
    try:
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror}); is it a training output dir (out_dir)?") from None

def own_file(run_dir, name):
    """run_dir/name as the run wrote it: a regular file, not a link (into another run, or anywhere)."""
    path = os.path.join(run_dir, name)
    if os.path.islink(path):
        raise DataError(f"{path} is a link (to {os.readlink(path)}); a run's files are its own: report the run it points into.")
    if not os.path.exists(path):
        raise DataError(f"{run_dir} has no {name}; is it a training output dir (out_dir)?")
    return path

def load_run(run_dir):
    path = own_file(run_dir, 'metrics.jsonl')
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
    cfg = read_json(own_file(run_dir, 'config.json'), 'run config')
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
    if os.path.lexists(os.path.join(run_dir, 'summary.json')):
        summary = read_json(own_file(run_dir, 'summary.json'), 'run summary')
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
            'provenance': cfg.get('provenance') or {}, 'data_signature': cfg.get('data_signature')}

def data_sections(runs, device='cpu'):
    """The study's data-side sections, per data dir / N_hot / validation set of its runs: the KN data
    baseline (item 2), Algorithm 1's fingerprint false positives (item 1); and the n-gram trajectories of
    every run that kept weight snapshots (item 6)."""
    out = {'baseline': [], 'fingerprints': [], 'trajectories': {}, 'kn_by_size': [], 'frequency': []}
    seen = set()
    for r in runs:
        key = (r['data_dir'], r['hot_size'], r['val_windows'], r['block_size'])
        if key not in seen and not os.path.exists(os.path.join(r['data_dir'], 'meta.json')):
            out.setdefault('no_data', [])       # runs re-rendered without their data (a clone): the other tables still render
            out['no_data'] += [] if r['data_dir'] in out['no_data'] else [r['data_dir']]
        elif key not in seen:
            seen.add(key)
            meta = load_meta(r['data_dir'])
            index, hot_sha = tier_index(r['data_dir'], meta, r['hot_size'], GPTConfig.ngram_orders)   # every run's is_hot labels
            for q in runs:
                if (q['data_dir'], q['hot_size']) == key[:2]:
                    same_data(q, data_signature(meta, hot_sha))
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
            if EXTENDED:        # Algorithm 1's b-bit fingerprints are a variant's (extensions/variants.py)
                fp = cached(r['data_dir'], meta, 'fingerprints', str(r['hot_size']), lambda: fingerprint_analysis(r['data_dir'], meta, r['hot_size']))
                out['fingerprints'] += [{'data': r['data'], 'hot_size': r['hot_size'], **f} for f in fp]
        if r['snapshots'] >= 2:
            out['trajectories'][r['run']] = ngram_trajectories(r['run_dir'])
    return out

def same_data(run, current):
    """The data-side tables are the data dir's as it is now: a run trained on other data (another corpus prepared
    into the same dir since) would be put beside another corpus's tables under its own name."""
    saved = run['data_signature']
    diff = sorted(k for k in set(saved or {}) | set(current) if (saved or {}).get(k) != current.get(k))
    if diff:
        raise DataError(f"{run['run_dir']} was trained on other data than {run['data_dir']} holds now ({', '.join(diff)} "
                        f"differ): its data-side tables would be another corpus's. Prepare that data dir as the run's "
                        f"config.json says, or leave the run out of --runs")

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
