"""
Exact top-k of the output head without reading every row (MD-mix notes, idea C "logit head short-circuit").

The head's rows are grouped into blocks; a block's logits are bounded by ||h|| * (its largest row norm)
(Cauchy-Schwarz). Blocks are read in order of that bound, and reading stops once the k-th best logit
found is at least the bound of every block not read: exact by construction. Blocks are either
norm-sorted (rows sorted by norm, so a block's bound is tight for its rows) or MD-mix buckets (rows by a
seeded hash: the notes' proposal). `bench.py --preset mdx` measures rows touched and time vs the dense
matmul; "To Index or Not to Index" (ICDE 2019) found a blocked matmul often beats exact MIPS.
"""
import torch

import mdmix


class BoundedHead:
    """Exact top-k of h @ W.T over the rows of W (V, d), reading whole blocks in bound order."""

    def __init__(self, weight, block=256, buckets='norm', seed=0):
        W = weight.detach()
        norms = W.norm(dim=1)
        if buckets == 'norm':
            order = torch.argsort(norms, descending=True)
        else:                                         # MD-mix buckets: rows grouped by a seeded hash of their id
            ids = torch.arange(W.shape[0], device=W.device)
            order = torch.argsort(mdmix.mdmix_hash(ids, torch.tensor([seed], device=W.device), 1 << 30)[:, 0])
        self.order, self.block = order, block
        self.W = W[order]                             # rows in block order
        nb = -(-W.shape[0] // block)
        pad = nb * block - W.shape[0]
        self.max_norm = torch.nn.functional.pad(norms[order], (0, pad)).view(nb, block).max(1).values   # (nb,)
        self.read_order = torch.argsort(self.max_norm, descending=True)

    @torch.no_grad()
    def topk(self, h, k):
        """h (d,): (values, token ids) of the k largest logits, and the number of rows read."""
        hn = h.norm()
        best_v = torch.full((k,), -float('inf'), device=h.device, dtype=self.W.dtype)
        best_i = torch.zeros(k, dtype=torch.long, device=h.device)
        rows = 0
        for bi in self.read_order.tolist():
            if best_v[-1] >= hn * self.max_norm[bi]:   # no row left can beat the k-th best: done, exactly
                break
            lo = bi * self.block
            logits = self.W[lo:lo + self.block] @ h
            rows += logits.numel()
            v, i = torch.topk(torch.cat([best_v, logits]), k)
            best_i = torch.cat([best_i, self.order[lo:lo + self.block]])[i]
            best_v = v
        return best_v, best_i, rows
