"""
Reversible coupling blocks (issue 18, part 1; RevNet, Reformer; the MD-mix notes' "reversible Feistel
mixers"): `block='reversible'`. The residual stream is carried as two copies (x1, x2) of width C, as in
the Reformer, and each block is one Feistel step of the block's own parts
    y1 = x1 + F(x2),   F(x) = a + attn(ln_1(x + a)),  a = the Engram gate's output (0 outside Engram layers)
    y2 = x2 + G(y1),   G(x) = mlp(ln_2(x))
so the Engram injection keeps its place (before attention) and the parameters are the prenorm block's.
It inverts as x2 = y2 - G(y1), x1 = y1 - F(x2); the stack's output is (y1 + y2) / 2.

Training keeps no activation inside the stack: RevStack, one autograd Function over all blocks, saves only
the last (y1, y2). Its backward walks the blocks from the last, rebuilds each block's input from its
output and re-runs the block with autograd for its gradients: activation memory flat in depth instead of
linear, for one more forward of every block. Replayed in that re-run: the dropout RNG (the state before F
and before G of every block, when dropout is on) and autocast. Not replayable, so refused by
ModelConfig.validate: gate_credit (a loss on alpha needs alpha's graph) and MoE FFNs (their load statistics
would be updated twice).
"""
from contextlib import contextmanager

import torch
import torch.nn as nn

from configurator import ConfigError
from layers import Block
from engramlib.options import Group


class RevBlock(nn.Module):
    """A prenorm block's parts (layers.Block: ln_1, attn, ln_2, mlp and the Engram gate) run as F and G."""

    def __init__(self, config, layer_idx, engram=None):
        super().__init__()
        self.layer_idx, self.parts = layer_idx, Block(config, layer_idx, engram)

    @property
    def engram(self):
        return self.parts.engram

    def f(self, x, fwd):
        """F and the Engram layer's alpha (None elsewhere)."""
        p = self.parts
        if p.engram is None:
            return p.attn(p.ln_1(x), fwd), None
        a, alpha = p.engram(x, fwd.memory[self.layer_idx], fwd)
        return a + p.attn(p.ln_1(x + a), fwd), alpha

    def g(self, x, fwd):
        return self.parts.mlp(self.parts.ln_2(x), fwd)

    def forward(self, x1, x2, fwd):
        f, alpha = self.f(x2, fwd)
        y1 = x1 + f
        return y1, x2 + self.g(y1, fwd), alpha

    def inverse(self, y1, y2, fwd):
        x2 = y2 - self.g(y1, fwd)
        return y1 - self.f(x2, fwd)[0], x2

    @staticmethod
    def stack(blocks, x, fwd, reversible=True):
        """The block stack (model.py's seam). reversible=False runs the same blocks with plain autograd,
        storing every activation (the twin the tests compare with); inference never needs the Function."""
        if reversible and torch.is_grad_enabled():
            memory = list({id(m): m for m in fwd.memory.values()}.values())    # layers may share one read
            params = [p for p in blocks.parameters()]
            y1, y2 = run_reversible(blocks, fwd, len(memory), x, *memory, *params)
        else:
            y1 = y2 = x
            for block in blocks:
                y1, y2, alpha = block(y1, y2, fwd)
                if alpha is not None:
                    fwd.alphas.append(alpha)
        return (y1 + y2) / 2


@torch.compiler.disable
def run_reversible(*args):
    """RevStack runs eager under torch.compile (a graph break either side): dynamo cannot trace a backward
    that re-runs modules with autograd. The blocks' parts still compile where they are called alone."""
    return RevStack.apply(*args)

def rng_state(device):
    """The RNG state dropout will draw from (the CPU one, and the device's on CUDA)."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == 'cuda' else None

@contextmanager
def replay_rng(state, device_type, device):
    """Run with the RNG as it was at rng_state (None: nothing to replay), leaving the RNG as it is now."""
    if state is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device_type == 'cuda' else []):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


class RevStack(torch.autograd.Function):
    """All reversible blocks as one Function of (x, the memory vectors, the blocks' parameters)."""

    @staticmethod
    def forward(ctx, blocks, fwd, n_memory, x, *tensors):
        device = x.device
        memory = tensors[:n_memory]
        ctx.blocks, ctx.fwd = blocks, fwd
        ctx.slots = {l: next(i for i, m in enumerate(memory) if m is e) for l, e in fwd.memory.items()}
        ctx.autocast = (device.type, torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        replay = blocks.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in blocks.modules())
        ctx.rng = []
        y1 = y2 = x
        for block in blocks:
            rng_f = rng_state(device) if replay else None
            f, alpha = block.f(y2, fwd)
            y1 = y1 + f
            rng_g = rng_state(device) if replay else None
            y2 = y2 + block.g(y1, fwd)
            ctx.rng.append((rng_f, rng_g))
            if alpha is not None:
                fwd.alphas.append(alpha)
        ctx.save_for_backward(y1, y2, *memory)
        return y1, y2

    @staticmethod
    def backward(ctx, dy1, dy2):
        blocks, fwd = ctx.blocks, ctx.fwd
        y1, y2, *memory = ctx.saved_tensors
        leaves = [m.detach().requires_grad_() for m in memory]     # the re-run's graph ends at these
        params = list(blocks.parameters())
        grads = {id(p): None for p in params}
        dmem = [None] * len(leaves)
        device_type, enabled, dtype = ctx.autocast
        stored, fwd.memory = fwd.memory, {l: leaves[i] for l, i in ctx.slots.items()}
        try:
            for block, (rng_f, rng_g) in zip(reversed(blocks), reversed(ctx.rng)):
                bparams = [p for p in block.parameters() if p.requires_grad]
                with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
                    y1 = y1.detach().requires_grad_()
                    with replay_rng(rng_g, device_type, y1.device):
                        g = block.g(y1, fwd)
                    dy1 = dy1 + accumulate(torch.autograd.grad(g, [y1] + bparams, dy2, allow_unused=True), bparams, grads)
                    x2 = (y2 - g).detach().requires_grad_()                          # inverse of y2 = x2 + G(y1)
                    with replay_rng(rng_f, device_type, y1.device):
                        f = block.f(x2, fwd)[0]
                    out = torch.autograd.grad(f, [x2] + bparams + leaves, dy1, allow_unused=True)
                    dy2 = dy2 + accumulate(out[:1 + len(bparams)], bparams, grads)
                    dmem = [d if o is None else o if d is None else d + o for d, o in zip(dmem, out[1 + len(bparams):])]
                y1, y2 = (y1 - f).detach(), x2.detach()                                 # inverse of y1 = x1 + F(x2)
        finally:
            fwd.memory = stored
        return (None, None, None, dy1 + dy2, *dmem, *(grads[id(p)] for p in params))   # x1 = x2 = x


def accumulate(out, params, grads):
    """out = (d input, d params...): adds the parameters' gradients into grads, returns d input."""
    for p, g in zip(params, out[1:]):
        if g is not None:
            grads[id(p)] = g if grads[id(p)] is None else grads[id(p)] + g
    return out[0]


def saved_activation_bytes(fn, exclude=()):
    """fn() and the bytes of the distinct storages autograd saves for backward while it runs, the tensors
    in exclude (the parameters) not counted: activation memory, measured alike on CPU and GPU. (Tensors
    that torch.utils.checkpoint(use_reentrant=False) holds are not seen: compare with use_reentrant=True.)"""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen = {}
    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def check_reversible(c):
    if c['block'] == 'reversible' and (c['ffn'] == 'moe' or c['gate_credit']):
        raise ConfigError("block='reversible' re-runs every block in backward: MoE load statistics would update twice and "
                          "gate_credit needs alpha's graph; use block='prenorm' with ffn='moe' or gate_credit")

OPTIONS = Group("reversible blocks (block='reversible')", {}, part='reversible', check=check_reversible)
