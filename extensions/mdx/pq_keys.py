"""
Product-quantized attention keys with seeded codebooks (MD-mix notes, idea 6): a cached key is stored as
M one-byte codes (a codeword per d/M-dim subspace) instead of d bf16 values, and q.k is estimated from
the codewords. "Seeded": the codewords are MD-mix Gaussian noise (the same on any device from the seed)
scaled to each subspace's spread, so nothing is learned or stored. The reference is learned (k-means)
codebooks. Measured by recall@k of each query's true top-k keys (`bench.py --preset mdx`).
"""
import torch

import mdmix


def seeded_codebooks(d, M, C, seed=0, scale=None, device='cpu'):
    """(M, C, d/M) codewords: MD-mix Gaussian noise keyed by (codeword, subspace), times scale (M,) or 1."""
    ids = torch.arange(C, device=device).expand(1, C)
    cb = torch.stack([mdmix.Noise({}, seed=seed).xi(ids, m, 'k', d // M) for m in range(M)])[:, 0]   # (M, C, d/M)
    return cb * (scale.view(M, 1, 1) if scale is not None else 1)

def subspace_scale(keys, M):
    """The per-subspace RMS of the keys: all a seeded codebook learns from the data (M numbers)."""
    return keys.view(len(keys), M, -1).pow(2).mean((0, 2)).sqrt()

def kmeans_codebooks(keys, M, C, iters=15, seed=0):
    """Learned reference: k-means per subspace (init: C random keys)."""
    g = torch.Generator(device='cpu').manual_seed(seed)
    x = keys.view(len(keys), M, -1).transpose(0, 1)                                 # (M, N, d/M)
    cb = x[:, torch.randperm(len(keys), generator=g)[:C].to(keys.device)].clone()   # (M, C, d/M)
    for _ in range(iters):
        assign = torch.cdist(x, cb).argmin(-1)                                       # (M, N)
        for m in range(M):
            sums = torch.zeros_like(cb[m]).index_add_(0, assign[m], x[m])
            n = torch.bincount(assign[m], minlength=C).unsqueeze(1)
            cb[m] = torch.where(n > 0, sums / n.clamp(min=1), cb[m])
    return cb

def encode(keys, cb):
    """(N, d) keys -> (N, M) uint8 codes: the nearest codeword per subspace."""
    M = cb.shape[0]
    x = keys.view(len(keys), M, -1).transpose(0, 1)
    return torch.cdist(x, cb).argmin(-1).T.to(torch.uint8)

def decode(codes, cb):
    M = cb.shape[0]
    return cb[torch.arange(M, device=codes.device), codes.long()].flatten(1)       # (N, d)

def recall_at_k(q, keys, approx, k):
    """Mean over queries of |true top-k keys by q.k  ∩  top-k by q.approx| / k."""
    true = (q @ keys.T).topk(k, -1).indices
    est = (q @ approx.T).topk(k, -1).indices
    return (true.unsqueeze(-1) == est.unsqueeze(-2)).any(-1).float().mean().item()
