"""
MD-banded (LSH) attention (issue 18, part 2; the MD-mix notes' "MD-banded attention", after the Reformer):
`attention='lsh'`. Each query attends to
  - its local window: the keys at most lsh_window - 1 positions back (itself included), and
  - in each of lsh_rounds hash rounds, the earlier keys of its own bucket, as far back as the sorted-chunk
    scheme below reaches.
A bucket is an MD-mix permutation of the sign bits of a low-dim random projection (one per round and layer)
of the query or key, taken mod the number of buckets T // lsh_bucket_size: vectors with a small angle share
their signs, so they share a bucket. A pair met in the window or in an earlier round is not counted again,
so the output is the exact softmax over the union of what was met.

Speed comes from sorting, not masking: per round the keys are sorted by (bucket, position) and so are the
queries; the sorted queries are cut into chunks of c = lsh_bucket_size, and each chunk reads the 2c sorted
keys that end at its last query's place in the key order (the c most recent keys of its bucket, and more).
Work per round is T * 2c instead of T^2 / 2, and the window adds T * 2w. With one bucket holding all
keys (lsh_bucket_size >= T) it is causal attention exactly (a test).
No attention dropout, and no KV-cache path (generate with use_cache=False).
"""
import math

import torch
import torch.nn as nn

import mdmix
from engramlib.options import Group, Option


class LSHAttention(nn.Module):
    """The attention kernel of CausalSelfAttention for attention='lsh': (B, H, T, hd) q, k, v -> (B, H, T, hd)."""

    def __init__(self, config, layer_idx):
        super().__init__()
        lsh = config.lsh
        self.c, self.w, self.salt = lsh.lsh_bucket_size, lsh.lsh_window, layer_idx * 1009
        bits = n_bits(max(1, config.block_size // self.c))
        g = torch.Generator().manual_seed(self.salt)
        self.register_buffer('proj', torch.randn(lsh.lsh_rounds, config.n_embd // config.n_head, bits, generator=g),
                             persistent=False)

    def forward(self, q, k, v, fwd):
        no_kv_cache('lsh', fwd)
        return lsh_attention(q, k, v, self.proj, self.c, self.w, self.salt)[0]


def no_kv_cache(kind, fwd):
    """The attention kinds of extensions/mdx/ attend over a whole window: sampling re-reads it instead of caching."""
    if fwd.kv is not None:
        raise NotImplementedError(f"attention='{kind}' has no KV-cache path: sample with use_cache=False "
                                  "(sample.py --no_cache)")

def n_bits(n_buckets):
    return max(1, math.ceil(math.log2(n_buckets)))

def buckets(x, proj, n_buckets, salt):
    """(B, H, T, hd) -> (B, H, T): the code of the signs of x @ proj, mapped to a bucket by an MD-mix
    permutation of all codes (so every bucket receives the same number of codes) mod n_buckets."""
    bits = n_bits(n_buckets)
    code = ((x @ proj[:, :bits].to(x.dtype) > 0).long() << torch.arange(bits, device=x.device)).sum(-1)
    h = mdmix.mdmix_hash(torch.arange(1 << bits, device=x.device), torch.tensor([salt], device=x.device), 1 << 30)[:, 0]
    return (h.argsort().argsort() % n_buckets)[code]

def part(q, k, v, mask, scale):
    """Softmax attention of q (..., Q, d) over k, v (..., S, d) where mask (..., Q, S): the output and
    the log partition sum (about -1e30 where nothing is allowed: a weight of 0, with finite gradients)."""
    s = (q @ k.transpose(-1, -2)).float().mul(scale).masked_fill(~mask, float('-inf'))
    m = s.amax(-1, keepdim=True).clamp(min=-1e30)
    p = torch.exp(s - m)
    z = p.sum(-1, keepdim=True).clamp(min=1e-30)
    return (p.to(v.dtype) @ v) / z.to(v.dtype), (m + z.log()).squeeze(-1)

def chunks(x, size, fill=0):
    """Pad dim 2 of x to a multiple of size and split it: (B, H, T, ...) -> (B, H, n, size, ...)."""
    T = x.size(2)
    n = -(-T // size)
    pad = x.new_full((*x.shape[:2], n * size - T, *x.shape[3:]), fill)
    return torch.cat([x, pad], 2).view(*x.shape[:2], n, size, *x.shape[3:])

def local_part(q, k, v, w, scale):
    """Each query over the keys 0..w-1 positions back: chunks of w read their own and the previous chunk."""
    T = q.size(2)
    qc, kc, vc = (chunks(t, w) for t in (q, k, v))
    k2, v2 = (torch.cat([t.roll(1, 2), t], 3) for t in (kc, vc))        # previous chunk, this chunk
    pos = chunks(torch.arange(T, device=q.device).view(1, 1, T), w, fill=-1)[0, 0]   # (n, w)
    kpos = torch.cat([pos.roll(1, 0), pos], 1)
    kpos[0, :w] = -1                                                    # the first chunk has no previous one
    d = pos[:, :, None] - kpos[:, None, :]
    out, lse = part(qc, k2, v2, (kpos[:, None, :] >= 0) & (d >= 0) & (d < w), scale)
    return out.flatten(2, 3)[:, :, :T], lse.flatten(2, 3)[:, :, :T]

def gather(x, index):
    """x (B, H, T, ...) at index (B, H, *shape) along dim 2 -> (B, H, *shape, ...)."""
    B, H = index.shape[:2]
    flat = index.reshape(B, H, -1)
    if x.dim() == 3:
        return x.gather(2, flat).view(index.shape)
    return x.gather(2, flat[..., None].expand(-1, -1, -1, x.size(-1))).view(*index.shape, x.size(-1))

def round_part(q, k, v, bq, bk, earlier, c, w, scale):
    """One hash round over the sorted chunks (module docstring). earlier: [(bq, bk)] of the rounds before,
    whose pairs are not counted again. Returns output, lse (natural order) and the pairs (qpos, kpos, mask)."""
    B, H, T, _ = q.shape
    pos = torch.arange(T, device=q.device).expand(B, H, T)
    kkey, qkey = bk * T + pos, bq * T + pos
    kkey_sorted, korder = kkey.sort(-1)
    qorder = qkey.argsort(-1)
    end = torch.searchsorted(kkey_sorted, qkey.gather(2, qorder), right=True)   # per sorted query: its keys end here
    qpos = chunks(qorder, c, fill=-1)                                             # (B, H, n, c)
    last = chunks(end, c).amax(-1)                                                # (B, H, n)
    slot = last[..., None] - 2 * c + torch.arange(2 * c, device=q.device)         # (B, H, n, 2c) in sorted keys
    kpos = gather(korder, slot.clamp(min=0))
    qp = qpos.clamp(min=0)
    mask = (slot[..., None, :] >= 0) & (qpos[..., :, None] >= 0)
    mask &= gather(bq, qp)[..., :, None] == gather(bk, kpos)[..., None, :]
    dist = qp[..., :, None] - kpos[..., None, :]
    mask &= dist >= w                                                             # the window has the nearer ones
    for bq0, bk0 in earlier:
        mask &= gather(bq0, qp)[..., :, None] != gather(bk0, kpos)[..., None, :]
    out, lse = part(gather(q, qp), gather(k, kpos), gather(v, kpos), mask, scale)
    out, lse = out.flatten(2, 3)[:, :, :T], lse.flatten(2, 3)[:, :, :T]
    order = qorder[..., None].expand(-1, -1, -1, out.size(-1))
    return (torch.empty_like(out).scatter_(2, order, out), torch.empty_like(lse).scatter_(2, qorder, lse),
            (qp, kpos, mask))

def lsh_attention(q, k, v, proj, c, w, salt=0, pairs=False):
    """Causal LSH attention, (B, H, T, d) -> (B, H, T, d); with pairs=True also the attended (query, key)
    pairs of the hash rounds as a list of (qpos, kpos, mask) (for recall)."""
    T = q.size(2)
    scale = 1 / math.sqrt(q.size(-1))
    n_buckets = max(1, T // c)
    out, lse = local_part(q, k, v, w, scale)
    outs, lses, found, earlier = [out], [lse], [], []
    for r in range(proj.size(0)):
        bq, bk = (buckets(t, proj[r], n_buckets, salt + r) for t in (q, k))
        out, lse, pairs_r = round_part(q, k, v, bq, bk, earlier, c, w, scale)
        outs.append(out)
        lses.append(lse)
        found.append(pairs_r)
        earlier.append((bq, bk))
    lses = torch.stack(lses)
    weight = torch.exp(lses - torch.logsumexp(lses, 0))                    # each part's share of the union's mass
    y = sum(wt[..., None].to(o.dtype) * o for wt, o in zip(weight, outs))
    return (y, found) if pairs else (y, None)

def attended(T, w, found, device='cpu'):
    """The dense (B, H, T, T) mask of the pairs an lsh_attention call attended (window and rounds)."""
    pos = torch.arange(T, device=device)
    d = pos[:, None] - pos[None, :]
    B, H = found[0][0].shape[:2] if found else (1, 1)
    mask = ((d >= 0) & (d < w)).expand(B, H, T, T).clone()
    for qp, kpos, m in found:
        flat = (qp[..., :, None] * T + kpos[..., None, :]).masked_fill(~m, 0).flatten(2)
        mask.view(B, H, -1).scatter_reduce_(2, flat, m.flatten(2), 'amax')
    return mask


OPTIONS = Group("LSH attention (attention='lsh')", dict(
    lsh_bucket_size=Option(64, 'lsh: mean keys per bucket (T // it buckets) and the sorted chunk length', at_least=1),
    lsh_rounds=Option(2, 'lsh: hash rounds', at_least=0),
    lsh_window=Option(64, 'lsh: the local window every query also reads', at_least=1),
), part='lsh')
