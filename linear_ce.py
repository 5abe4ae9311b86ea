"""
The head and its loss without the whole logits: per-position cross-entropy of x @ W^T computed `chunk` rows at a
time. At the paper's vocabulary one step's logits are 16,384 x 128,832 values (4.2 GB in bf16, twice that as the fp32
the softmax reads): memory traffic that does no model FLOP. Here only one chunk's logits live at once; each chunk is
a checkpoint (torch.utils.checkpoint), so its logits are recomputed in the backward instead of kept: one more head
matmul per chunk, in exchange for never writing the full logits to memory.

It serves everything the plain head's loss serves: per-position losses (the stratified eval, the gate-credit
variant), label smoothing and the MD-mix logit noise (drawn per row, so a chunk gets the rows' own noise). Per-position
losses equal the plain path's bit for bit where the matmul's row blocks do (fp32 on CPU, tested); the weight's
gradient is summed chunk by chunk (a reordered sum: equal within float rounding).
"""
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def chunk_losses(x, weight, targets, start, label_smoothing, noise):
    """Per-position losses of rows start.. of the flattened batch: the plain head's ops on a slice."""
    logits = x @ weight.t()
    if noise is not None:
        logits = noise.rows('logits', logits, start)
    return F.cross_entropy(logits, targets, reduction='none', label_smoothing=label_smoothing)


def chunked_cross_entropy(x, weight, targets, chunk, label_smoothing=0.0, noise=None):
    """x (B, T, C), weight (V, C), targets (B, T) -> per-position losses (B*T,), never more than `chunk` rows of
    logits at once. noise: the forward's BoundNoise (its rows(stream, logits, start)), or None."""
    x, targets = x.reshape(-1, x.size(-1)), targets.reshape(-1)
    out = []
    for start in range(0, x.size(0), chunk):
        rows = slice(start, start + chunk)
        args = (x[rows], weight, targets[rows], start, label_smoothing, noise)
        if torch.is_grad_enabled():
            out.append(checkpoint(chunk_losses, *args, use_reentrant=False))
        else:                                            # eval: nothing to recompute
            out.append(chunk_losses(*args))
    return torch.cat(out)

