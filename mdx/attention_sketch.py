"""
Skipping attention work with MD-mix sketches and bounds (issue 18, parts 3 and 4; the MD-mix notes'
"cancellation-aware" ideas A and B). Analyses of one query set against one key/value set (a decode-time
cache: every key is in the past), measured against full softmax attention in `bench.py --preset mdx`.

A. sketch-pruned attention: a CountSketch of width r (bucket of each dim and a Rademacher sign, both from
   MD-mix hashes of the dim) of every q and k; sketch(q) . sketch(k) is an unbiased estimate of q . k.
   A pair is skipped when its estimated score is more than tau below the query's highest estimate (the
   notes skip |estimate| < tau; in softmax what is negligible is a score far below the row's maximum,
   not one near zero). Reported: kept share, the true softmax mass of what was skipped, output error.
B. bucket-bounded aggregation: keys bucketed by an MD-mix hash of the sign bits of a low-dim random
   projection (similar keys share a bucket); per bucket its centroid c_B, radius r_B = max ||k - c_B||,
   largest value norm and size. For a query, every key of B has score <= (q . c_B + ||q|| r_B) / sqrt(d)
   = ub_B (Cauchy-Schwarz). The bucket with the highest ub_B is expanded exactly; its partition sum Z_1
   is a lower bound of the full Z, so B's contribution to the output, || sum_B p_i v_i ||, is at most
   n_B * max||v|| * exp(ub_B) / Z_1 = bound_B. Buckets with bound_B < tau are dropped, the rest expanded
   exactly. (The notes' |q . K_B| ||V_B|| / sqrt(d) bounds linear attention, not softmax.)
"""
import math

import torch

import mdmix


def count_sketch(x, r, salt=0):
    """(..., d) -> (..., r): dim j adds sign_j * x_j to bucket h_j; h and sign from MD-mix of (j, salt)."""
    d = x.shape[-1]
    h = mdmix.mdmix_hash(torch.arange(d, device=x.device), torch.tensor([salt, salt + 1], device=x.device), 1 << 30)
    bucket, sign = h[:, 0] % r, (h[:, 1] & 1).to(x.dtype) * 2 - 1
    return torch.zeros(*x.shape[:-1], r, dtype=x.dtype, device=x.device).index_add_(-1, bucket, x * sign)


def softmax_attention(q, k, v):
    """(Q, d), (N, d), (N, dv) -> (Q, dv) and the probabilities (Q, N)."""
    p = torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), -1)
    return p @ v, p


def sketch_pruned(q, k, v, r, tau, salt=0):
    """Idea A: attention over the pairs whose sketched score is within tau of the row's best estimate."""
    d = q.shape[-1]
    est = count_sketch(q, r, salt) @ count_sketch(k, r, salt).T / math.sqrt(d)
    keep = est >= est.max(-1, keepdim=True).values - tau
    s = (q @ k.T / math.sqrt(d)).masked_fill(~keep, float('-inf'))   # exact scores for kept pairs only
    out = torch.softmax(s, -1) @ v
    full, p = softmax_attention(q, k, v)
    return {'kept_share': float(keep.float().mean()), 'dropped_mass': float((p * ~keep).sum(-1).mean()),
            'rel_error': float(((out - full).norm(dim=-1) / full.norm(dim=-1)).mean())}


def key_buckets(k, n_buckets, bits=8, salt=0):
    """(N,) bucket of each key: MD-mix hash of the sign bits of `bits` seeded random projections."""
    g = torch.Generator(device='cpu').manual_seed(salt)
    proj = torch.randn(k.shape[-1], bits, generator=g).to(k.device, k.dtype)
    code = ((k @ proj > 0).long() << torch.arange(bits, device=k.device)).sum(-1)
    return mdmix.mdmix_hash(code, torch.tensor([salt], device=k.device), n_buckets)[:, 0]


def bucket_bounded(q, k, v, n_buckets, tau, salt=0):
    """Idea B for each query: drop buckets whose bound on their output contribution is below tau.
    Returns the figures and, per (query, dropped bucket), the bound beside the true contribution."""
    d = q.shape[-1]
    b = key_buckets(k, n_buckets, salt=salt)
    onehot = torch.nn.functional.one_hot(b, n_buckets).to(k.dtype)          # (N, B)
    n = onehot.sum(0)
    centroid = (onehot.T @ k) / n.clamp(min=1)[:, None]
    radius = torch.zeros(n_buckets, dtype=k.dtype, device=k.device).scatter_reduce(
        0, b, (k - centroid[b]).norm(dim=-1), 'amax')
    vmax = torch.zeros(n_buckets, dtype=k.dtype, device=k.device).scatter_reduce(0, b, v.norm(dim=-1), 'amax')
    s = q @ k.T / math.sqrt(d)                                               # (Q, N), for the expanded buckets
    ub = (q @ centroid.T + q.norm(dim=-1, keepdim=True) * radius) / math.sqrt(d)   # (Q, B)
    ub = ub.masked_fill(n == 0, float('-inf'))
    first = ub.argmax(-1)                                                    # expanded exactly first
    log_z1 = torch.logsumexp(s.masked_fill(b[None] != first[:, None], float('-inf')), -1)   # (Q,)
    bound = n * vmax * torch.exp(ub - log_z1[:, None])                       # (Q, B)
    drop = (bound < tau) & (n > 0)
    drop[torch.arange(len(q)), first] = False
    keep_item = ~drop.gather(1, b.expand(len(q), -1))                        # (Q, N)
    out = torch.softmax(s.masked_fill(~keep_item, float('-inf')), -1) @ v
    full, p = softmax_attention(q, k, v)
    contribution = torch.stack([(p * (b == j)) @ v for j in range(n_buckets)], 1).norm(dim=-1)   # (Q, B)
    return {'kept_share': float(keep_item.float().mean()), 'dropped_mass': float((p * ~keep_item).sum(-1).mean()),
            'rel_error': float(((out - full).norm(dim=-1) / full.norm(dim=-1)).mean()),
            'bound_holds': bool((contribution[drop] <= bound[drop] * (1 + 1e-5)).all()),
            'dropped_buckets': int(drop.sum())}
