"""
The head and its loss without the whole logits: per-position cross-entropy of x @ W^T computed `chunk` rows at a
time. At the paper's vocabulary one step's logits are 16,384 x 128,832 values (4.2 GB in bf16, twice that as the fp32
the softmax reads): memory traffic that does no model FLOP. Here only one chunk's logits live at once.

The training loss is the mean of the per-position losses (GPT.forward; auxiliary losses read them detached), so its
gradient reaches every position with the same weight, 1/N. That is known in the forward, so each chunk's gradients
are computed there, while its logits exist (as Liger-Kernel's fused linear cross-entropy does): dL/dlogits =
softmax - target distribution, then x's rows and W's gradient from it. The backward only scales them by the
incoming gradient: the head's three matmuls (logits, x's and W's gradients), none recomputed, no logits kept.

It serves everything the plain head's loss serves: per-position losses (the stratified eval, the gate-credit
variant), label smoothing and the MD-mix logit noise (drawn per row, so a chunk gets the rows' own noise; additive,
so it leaves dL/dlogits' form unchanged). Per-position losses equal the plain path's bit for bit where the matmul's
row blocks do (fp32 on CPU, tested); the gradients are summed chunk by chunk (equal within float rounding).
"""
import torch
import torch.nn.functional as F


def chunk_logits(x, weight, start, noise):
    """The plain head's logits for rows start.. of the flattened batch (with their own logit noise)."""
    logits = x @ weight.t()
    return logits if noise is None else noise.rows('logits', logits, start)


class MeanCrossEntropy(torch.autograd.Function):
    """(per-position losses, their mean); the mean carries the gradient, computed in the forward."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk, label_smoothing, noise):
        n, V = x.size(0), weight.size(0)
        losses, gx, gw = [], torch.empty_like(x), torch.zeros_like(weight)
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            logits = chunk_logits(x[rows], weight, start, noise)
            losses.append(F.cross_entropy(logits, targets[rows], reduction='none', label_smoothing=label_smoothing))
            d = torch.softmax(logits.float(), dim=-1)                        # dL/dlogits of the mean loss
            d[torch.arange(d.size(0), device=d.device), targets[rows]] -= 1.0 - label_smoothing
            if label_smoothing:
                d -= label_smoothing / V
            d = (d / n).to(logits.dtype)
            gx[rows] = d @ weight
            gw += d.t() @ x[rows]
        losses = torch.cat(losses)
        ctx.save_for_backward(gx, gw)
        ctx.mark_non_differentiable(losses)
        return losses, losses.mean()

    @staticmethod
    def backward(ctx, _, grad_mean):
        gx, gw = ctx.saved_tensors
        return gx * grad_mean, gw * grad_mean, None, None, None, None


def chunked_cross_entropy(x, weight, targets, chunk, label_smoothing=0.0, noise=None):
    """x (B, T, C), weight (V, C), targets (B, T) -> (per-position losses (B*T,), their mean), never more than
    `chunk` rows of logits at once; the mean carries the gradient (the losses are detached). noise: the forward's
    BoundNoise (its rows(stream, logits, start)), or None."""
    x, targets = x.reshape(-1, x.size(-1)), targets.reshape(-1)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return MeanCrossEntropy.apply(x, weight, targets, chunk, label_smoothing, noise)
    losses = torch.cat([F.cross_entropy(chunk_logits(x[s:s + chunk], weight, s, noise), targets[s:s + chunk], reduction='none',
                                        label_smoothing=label_smoothing) for s in range(0, x.size(0), chunk)])
    return losses, losses.mean()                        # eval: nothing to differentiate
