"""
Skipping attention work with MD-mix sketches and bounds (issue 18, parts 3 and 4; the MD-mix notes'
"cancellation-aware" ideas A and B). Two uses: analyses of one query set against a decode-time cache
(every key visible), measured against full softmax attention in `bench.py --preset mdx`; and the causal
attention kinds attention='sketch' / 'bucket', which train with the pruning on. Both kinds compute every
score and mask: they measure what the pruning costs in loss, and save no time.

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
   exactly. (The notes' |q . K_B| ||V_B|| / sqrt(d) bounds linear attention, not softmax.) Causal: the
   statistics are those of the keys the query sees, so no future key decides what is dropped.
"""
import math

import torch
import torch.nn as nn

import mdmix
from extensions.mdx.attention_lsh import no_kv_cache
from engramlib.options import Group, Option


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

def masked_attention(q, k, v, keep):
    """Softmax attention over the pairs in keep (..., Q, N), with exact scores."""
    s = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~keep, float('-inf'))
    return torch.softmax(s, -1) @ v

def causal(T, device):
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()

def sketch_keep(q, k, r, tau, salt=0, visible=None):
    """Idea A: the pairs (..., Q, N) whose sketched score is within tau of the row's best visible estimate."""
    est = count_sketch(q, r, salt) @ count_sketch(k, r, salt).transpose(-1, -2) / math.sqrt(q.shape[-1])
    if visible is not None:
        est = est.masked_fill(~visible, float('-inf'))
    keep = est >= est.amax(-1, keepdim=True) - tau
    return keep if visible is None else keep & visible

def figures(q, k, v, keep):
    """Kept share, the softmax mass of what was skipped and the output's relative error vs full attention."""
    out = masked_attention(q, k, v, keep)
    full, p = softmax_attention(q, k, v)
    return {'kept_share': float(keep.float().mean()), 'dropped_mass': float((p * ~keep).sum(-1).mean()),
            'rel_error': float(((out - full).norm(dim=-1) / full.norm(dim=-1)).mean())}

def sketch_pruned(q, k, v, r, tau, salt=0):
    """Idea A on a decode-time cache (every key visible)."""
    return figures(q, k, v, sketch_keep(q, k, r, tau, salt))


def projection(d, bits=8, salt=0):
    """The seeded random projection (d, bits) whose sign bits bucket the keys."""
    return torch.randn(d, bits, generator=torch.Generator(device='cpu').manual_seed(salt))

def key_buckets(k, n_buckets, salt=0, proj=None):
    """(..., N) bucket of each key: MD-mix hash of the sign bits of 8 seeded random projections."""
    proj = (projection(k.shape[-1], salt=salt) if proj is None else proj).to(k.device, k.dtype)
    code = ((k @ proj > 0).long() << torch.arange(proj.shape[1], device=k.device)).sum(-1)
    return mdmix.mdmix_hash(code.flatten(), torch.tensor([salt], device=k.device), n_buckets)[:, 0].view(code.shape)

def bucket_stats(k, v, b, n_buckets):
    """Every key visible: per bucket its size, centroid, radius and largest value norm, shaped (1, B, ...)
    to broadcast over queries."""
    onehot = torch.nn.functional.one_hot(b, n_buckets).to(k.dtype)          # (N, B)
    n = onehot.sum(0)
    centroid = (onehot.T @ k) / n.clamp(min=1)[:, None]
    radius = torch.zeros(n_buckets, dtype=k.dtype, device=k.device).scatter_reduce(
        0, b, (k - centroid[b]).norm(dim=-1), 'amax')
    vmax = torch.zeros(n_buckets, dtype=k.dtype, device=k.device).scatter_reduce(0, b, v.norm(dim=-1), 'amax')
    return n[None], centroid[None], radius[None], vmax[None]

def causal_bucket_stats(k, v, b, n_buckets):
    """The same over the keys each query sees (itself and before): (..., T, B, ...). O(T^2 d) memory, a
    measurement kernel for short blocks."""
    T = k.shape[-2]
    onehot = torch.nn.functional.one_hot(b, n_buckets).to(k.dtype)          # (..., T, B)
    n = onehot.cumsum(-2)
    centroid = (onehot[..., None] * k[..., None, :]).cumsum(-3) / n.clamp(min=1)[..., None]   # (..., T, B, d)
    at_key = centroid.gather(-2, b[..., None, :, None].expand(*b.shape[:-1], T, T, k.shape[-1]))   # (..., t, i, d)
    visible = causal(T, k.device)
    dist = (k[..., None, :, :] - at_key).norm(dim=-1).masked_fill(~visible, 0)                  # (..., t, i)
    index = b[..., None, :].expand(*b.shape[:-1], T, T)
    zeros = torch.zeros(*b.shape[:-1], T, n_buckets, dtype=k.dtype, device=k.device)
    radius = zeros.scatter_reduce(-1, index, dist, 'amax')
    vmax = zeros.scatter_reduce(-1, index, v.norm(dim=-1)[..., None, :].masked_fill(~visible, 0), 'amax')
    return n, centroid, radius, vmax

def bucket_keep(q, k, b, stats, tau, visible=None):
    """Idea B for each query: drop buckets whose bound on their output contribution is below tau.
    Returns the kept pairs (..., Q, N), and per (query, bucket) the bound and whether it was dropped."""
    n, centroid, radius, vmax = stats
    d = q.shape[-1]
    s = q @ k.transpose(-1, -2) / math.sqrt(d)                               # (..., Q, N)
    if visible is not None:
        s = s.masked_fill(~visible, float('-inf'))
    ub = ((q[..., None, :] * centroid).sum(-1) + q.norm(dim=-1, keepdim=True) * radius) / math.sqrt(d)   # (..., Q, B)
    ub = ub.masked_fill(n == 0, float('-inf'))
    first = ub.argmax(-1, keepdim=True)                                      # expanded exactly first
    bq = b[..., None, :].expand_as(s)
    log_z1 = torch.logsumexp(s.masked_fill(bq != first, float('-inf')), -1, keepdim=True)
    bound = n * vmax * torch.exp(ub - log_z1)
    drop = (bound < tau) & (n > 0)
    drop.scatter_(-1, first, False)
    keep = ~drop.gather(-1, bq)
    return (keep if visible is None else keep & visible), bound, drop

def bucket_bounded(q, k, v, n_buckets, tau, salt=0):
    """Idea B on a decode-time cache (every key visible): the figures, and the bound beside the true
    contribution on every (query, dropped bucket)."""
    b = key_buckets(k, n_buckets, salt=salt)
    keep, bound, drop = bucket_keep(q, k, b, bucket_stats(k, v, b, n_buckets), tau)
    p = softmax_attention(q, k, v)[1]
    contribution = torch.stack([(p * (b == j)) @ v for j in range(n_buckets)], 1).norm(dim=-1)   # (Q, B)
    return {**figures(q, k, v, keep), 'bound_holds': bool((contribution[drop] <= bound[drop] * (1 + 1e-5)).all()),
            'dropped_buckets': int(drop.sum())}


class SketchAttention(nn.Module):
    """attention='sketch': causal attention over the pairs idea A keeps (a measurement kernel: it computes
    every score, so it shows what the pruning costs in loss, not time)."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.r, self.tau, self.salt = config.sketch.sketch_width, config.sketch.sketch_tau, layer_idx * 1009

    def forward(self, q, k, v, fwd):
        no_kv_cache('sketch', fwd)
        return masked_attention(q, k, v, sketch_keep(q, k, self.r, self.tau, self.salt, causal(q.size(2), q.device)))


class BucketAttention(nn.Module):
    """attention='bucket': causal attention without the key buckets idea B drops (bucket statistics over
    each query's visible keys; a measurement kernel like SketchAttention)."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.n, self.tau, self.salt = config.sketch.bucket_count, config.sketch.bucket_tau, layer_idx * 1009
        self.register_buffer('proj', projection(config.n_embd // config.n_head, salt=self.salt), persistent=False)

    def forward(self, q, k, v, fwd):
        no_kv_cache('bucket', fwd)
        with torch.no_grad():        # which buckets to drop is a choice, not a function to differentiate
            b = key_buckets(k, self.n, self.salt, self.proj)
            keep = bucket_keep(q, k, b, causal_bucket_stats(k, v, b, self.n), self.tau, causal(q.size(2), q.device))[0]
        return masked_attention(q, k, v, keep)


OPTIONS = Group("sketched and bucket-bounded attention (attention='sketch' | 'bucket')", dict(
    sketch_width=Option(4, 'sketch: CountSketch width', at_least=1),
    sketch_tau=Option(2.0, "sketch: skip pairs whose sketched score is more than tau below the row's best", at_least=0),
    bucket_count=Option(8, 'bucket: key buckets', at_least=1),
    bucket_tau=Option(0.01, 'bucket: drop buckets whose bound on their contribution is below tau', at_least=0),
), part='sketch')
