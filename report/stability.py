"""
Across a run's snapshots: W_K key stability (paper 6.3) and the n-gram trajectories of the memory's keys, with
their tables and figures.
"""
import math
import os

from tqdm import tqdm
import torch

from engramlib.checkpoint import load_weights
from factory import build_model, load_checkpoint, load_index
from engramlib.data import DataError, TokenData, load_counts, load_meta, to_device
from engram import has_memory
from factory import ModelConfig
from report.inputs import bad_config_value, read_json, snapshot_paths

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
        mcfg = ModelConfig.from_args(**snap['model_args'])
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


@torch.no_grad()
def ngram_trajectories(run_dir, data_dir=None):
    """Trajectories of sample n-grams' memory rows across a run's weight snapshots (see trajectory_sample)."""
    snaps = snapshot_paths(run_dir)
    vectors, sample = [], None
    for path in snaps:
        snap = load_checkpoint(path)
        if sample is None:
            mcfg = ModelConfig.from_args(**snap['model_args'])
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


# -----------------------------------------------------------------------------
# runs and the study
