"""
Route-stratified metrics (paper §4.3: losses split by hot/cold route, gate values, the flip): the one place they are defined.
train.py computes them at every eval; eval_stratified.py uses the same functions for reports.

Per position: loss, is_hot (its n-gram is hot in *any* order), is_hot per order, alpha per Engram
layer; the position's alpha for bucket tables is the mean over Engram layers.
"""
import math

import torch

from engramlib.data import to_device

BUCKET_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)   # [0,.2) ... [.8,1.0]: the last bucket includes 1.0
NB = len(BUCKET_EDGES) - 1

def eval_line(it, m):
    """An eval's metrics as the training log prints them."""
    return (f"eval {it}: val {m['val_loss']:.4f} | hot {m['val_loss_hot']:.4f} cold {m['val_loss_cold']:.4f} "
            f"delta {m['hot_cold_delta']:+.4f} | alpha hot {m.get('alpha_hot', float('nan')):.3f} "
            f"cold {m.get('alpha_cold', float('nan')):.3f} | hot share {m['hot_share']:.3f}")

def bucket_of(alpha):
    return (alpha * NB).floor().long().clamp_(0, NB - 1)

def new_sums(n_orders, n_layers, device='cpu'):
    """Accumulators, float64 so that sums do not depend on batch order at the precision we print."""
    z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)
    # alpha rows: one per Engram layer, then the layer mean
    return {'n': z(1), 'n_hot': z(1), 'loss': z(1), 'loss_hot': z(1), 'hot_order': z(n_orders),
            'alpha_hot': z(n_layers + 1), 'alpha_cold': z(n_layers + 1),
            'b_count': z(n_layers + 1, NB), 'b_loss': z(n_layers + 1, NB), 'b_hot': z(n_layers + 1, NB)}

def accumulate(sums, loss, is_hot_order, alpha=None):
    """loss (B,T); is_hot_order (O,B,T) bool; alpha (L,B,T) or None (no memory)."""
    hot = is_hot_order.any(0)
    h, loss = hot.double(), loss.double()
    sums['n'] += loss.numel()
    sums['n_hot'] += h.sum()
    sums['loss'] += loss.sum()
    sums['loss_hot'] += (loss * h).sum()
    sums['hot_order'] += is_hot_order.flatten(1).double().sum(1)
    if alpha is None:
        return
    a = torch.cat([alpha, alpha.mean(0, keepdim=True)]).double().flatten(1)    # (L+1, N)
    hf, lf = h.flatten(), loss.flatten()
    sums['alpha_hot'] += (a * hf).sum(1)
    sums['alpha_cold'] += (a * (1 - hf)).sum(1)
    b = bucket_of(a)
    for name, w in (('b_count', torch.ones_like(lf)), ('b_loss', lf), ('b_hot', hf)):
        sums[name].scatter_add_(1, b, w.expand_as(a).contiguous())

def flatten(sums):
    return torch.cat([v.flatten() for v in sums.values()])

def unflatten(vec, like):
    out, i = {}, 0
    for k, v in like.items():
        out[k] = vec[i:i + v.numel()].view_as(v)
        i += v.numel()
    return out

def _div(a, b):
    return float(a / b) if b > 0 else float('nan')

def finalize(sums, orders, layers):
    """Sums -> the metric dict logged at every eval (names as in the paper)."""
    s = {k: v.cpu() for k, v in sums.items()}
    n, nh = float(s['n']), float(s['n_hot'])
    m = {'val_loss': _div(s['loss'], n), 'val_loss_hot': _div(s['loss_hot'], nh),
         'val_loss_cold': _div(s['loss'] - s['loss_hot'], n - nh), 'hot_share': _div(nh, n),
         'n_positions': int(n)}
    m['hot_cold_delta'] = m['val_loss_hot'] - m['val_loss_cold']
    for o, c in zip(orders, s['hot_order'].tolist()):
        m[f'hot_share_o{o}'] = _div(c, n)
    if not layers:
        return m
    names = [f'L{l}' for l in layers] + ['mean']
    for i, name in enumerate(names):
        suffix = '' if name == 'mean' else f'_{name}'
        ah, ac = _div(s['alpha_hot'][i], nh), _div(s['alpha_cold'][i], n - nh)
        m[f'alpha_hot{suffix}'], m[f'alpha_cold{suffix}'], m[f'delta_alpha{suffix}'] = ah, ac, ah - ac
        m[f'alpha_buckets{suffix}'] = [
            {'lo': BUCKET_EDGES[j], 'hi': BUCKET_EDGES[j + 1], 'count': int(s['b_count'][i, j]),
             'mean_loss': _div(s['b_loss'][i, j], s['b_count'][i, j]),
             'hot_share': _div(s['b_hot'][i, j], s['b_count'][i, j])} for j in range(NB)]
    return m

@torch.no_grad()
def evaluate(model, data, starts, batch_size, device, autocast, orders, rank=0, world=1, all_reduce=None):
    """Stratified metrics of `model` over the validation windows `starts` (this rank takes every
    world-th batch; `all_reduce` sums the accumulators across ranks)."""
    T = model.config.block_size
    layers = list(model.engram_layers)
    sums = new_sums(len(orders), len(layers), device)
    was_training = model.training
    model.eval()
    for bi in range(rank, -(-len(starts) // batch_size), world):
        x, y, prev = to_device(data.windows('val', starts[bi * batch_size:(bi + 1) * batch_size], T), device)
        with autocast:
            _, _, info = model(x, y, prev=prev, diag=True)
        accumulate(sums, info['loss'].float(), info['is_hot'],
                   info['alpha'].float() if info['alpha'] is not None else None)
    model.train(was_training)
    if all_reduce is not None:
        sums = unflatten(all_reduce(flatten(sums)), sums)
    return finalize(sums, orders, layers)

# -----------------------------------------------------------------------------
# series over evals (paper Tables 4 and 6)

def flip(series):
    """series: [(iter, hot_cold_delta)] in iter order. The flip is the first eval iter at which the
    delta is >= 0 after having been < 0. Returns the flip iter (None if no flip), the most negative
    delta before it (max hot advantage) and the most positive delta from it on (max cold advantage),
    each with its iter. Without a flip, the extremes are taken over the whole series."""
    series = [(i, d) for i, d in series if d is not None and not math.isnan(d)]
    flip_iter, seen_neg = None, False
    for i, d in series:
        if d < 0:
            seen_neg = True
        elif seen_neg:
            flip_iter = i
            break
    before = [(i, d) for i, d in series if flip_iter is None or i < flip_iter]
    after = [(i, d) for i, d in series if flip_iter is None or i >= flip_iter]
    neg = min(((d, i) for i, d in before if d < 0), default=None)
    pos = max(((d, i) for i, d in after if d > 0), default=None)
    return {'flip_iter': flip_iter,
            'max_hot_advantage': neg[0] if neg else None, 'max_hot_advantage_iter': neg[1] if neg else None,
            'max_cold_advantage': pos[0] if pos else None, 'max_cold_advantage_iter': pos[1] if pos else None}

def wandb_row(m):
    """An eval's metrics as wandb panels group them (one section each in the default workspace, iter on the x
    axis): loss/ (val, hot, cold), flip/ (the hot - cold delta: Figure 2; the hot share), alpha/ (the gate
    on hot and cold positions, mean and per layer: Figure 3), alpha_buckets/ (the mean loss of each alpha
    bucket, mean over layers: Table 7 / Figure 4). NaN values (e.g. alpha of a model without memory) are left out."""
    row = {'loss/val': m['val_loss'], 'loss/val_hot': m['val_loss_hot'], 'loss/val_cold': m['val_loss_cold'],
           'flip/hot_cold_delta': m['hot_cold_delta'], 'flip/hot_share': m['hot_share']}
    for k, v in m.items():
        if k.startswith(('alpha_hot', 'alpha_cold', 'delta_alpha')):
            row[f'alpha/{k}'] = v
    for b in m.get('alpha_buckets', []):
        row[f"alpha_buckets/loss_{b['lo']:.1f}_{b['hi']:.1f}"] = b['mean_loss']
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}
