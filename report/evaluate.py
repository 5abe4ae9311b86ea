"""
One checkpoint's deep report: stratified metrics over the fixed validation windows, alpha buckets, per-order
hot share, the collision statistics of its hash tables; the paper's reference numbers.
"""
import os

import torch

from factory import load_model
from engramlib.data import TokenData, load_counts
from report.databaseline import data_baseline
from engramlib.metrics import evaluate
from report.inputs import config_name
from engramlib.system import autocast_context

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
