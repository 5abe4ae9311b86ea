"""
Count-Sketch LoRA (MD-mix notes, idea 5): low-rank adapters dW = B A whose entries are not parameters of
their own but read from two shared pools through MD-mix indices with Rademacher signs (a count sketch):
A[i, j] = s(i, j) * pool_A[h(i, j)], B likewise from pool_B (zero-initialized, so dW starts at 0). The
trainable parameters are the pools, shared by every adapted layer, so an adapter's size is chosen freely,
not as rank x (in + out) per layer. The indices are integers from integer hashing (mdmix), identical on
any device, unlike VeRA/NOLA's seeded random projections, which PEFT documents as not reproducible
across devices. Plain LoRA is the reference at equal trainable parameters.
"""
import math

import torch
import torch.nn as nn

import mdmix
from model import Extension
from engramlib.options import Group, Option

TARGETS = ('attn.c_attn', 'mlp.c_fc')          # the Linears that get an adapter, in every block


class LoRALinear(nn.Module):
    """base(x) + (x A^T) B^T * scale, A (r, in) ~ N(0, 1/in), B (out, r) = 0 (Hu et al. 2021)."""

    def __init__(self, base, rank, alpha=None):
        super().__init__()
        self.base, self.scale = base, (alpha or rank) / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    in_features = property(lambda self: self.base.in_features)
    out_features = property(lambda self: self.base.out_features)

    def factors(self):
        return self.A, self.B

    def delta_weight(self):
        A, B = self.factors()
        return (B @ A) * self.scale

    def forward(self, x):
        A, B = self.factors()
        return self.base(x) + (x @ A.T) @ B.T * self.scale


class SketchLoRALinear(LoRALinear):
    """LoRA whose A and B are gathered from shared pools by hashed index and sign (count sketch)."""

    def __init__(self, base, rank, pools, salt):
        nn.Module.__init__(self)
        self.base, self.scale, self.pools = base, 1.0, [pools]      # a list: the pools are the adapter set's, not this layer's
        for name, shape, k in (('A', (rank, base.in_features), 0), ('B', (base.out_features, rank), 1)):
            cells = torch.arange(shape[0] * shape[1])
            idx, sign = sketch(cells, salt * 2 + k, pools.size(k))
            self.register_buffer(f'idx_{name}', idx.view(shape), persistent=False)
            self.register_buffer(f'sign_{name}', sign.view(shape), persistent=False)

    def factors(self):
        p = self.pools[0]
        return self.sign_A * p.A[self.idx_A], self.sign_B * p.B[self.idx_B]


class SketchPools(nn.Module):
    """The trainable parameters of every SketchLoRALinear: pool A ~ N(0, 1/d_in), pool B = 0."""

    def __init__(self, size_a, size_b, fan_in):
        super().__init__()
        self.A = nn.Parameter(torch.randn(size_a) / math.sqrt(fan_in))
        self.B = nn.Parameter(torch.zeros(size_b))

    def size(self, k):
        return (self.A, self.B)[k].numel()


def sketch(cells, salt, size):
    """Pool index and Rademacher sign of each cell: two MD-mix words of (cell, salt), integer arithmetic only."""
    h = mdmix.mdmix_hash(cells, torch.tensor([salt, salt + (1 << 40)]), 1 << 62)
    return h[:, 0] % size, (h[:, 1] & 1) * 2.0 - 1.0


def targets(model):
    return [(name, m) for name, m in model.named_modules() if any(name.endswith(t) for t in TARGETS)]

def lora_params(model, rank):
    return sum(rank * (m.in_features + m.out_features) for _, m in targets(model))

def attach(model, kind, rank, pool=0):
    """Wrap the target Linears of a built GPT in adapters (kind 'lora' or 'cslora'); cslora's two pools hold
    `pool` parameters together (default: what LoRA of the same rank would have, i.e. equal parameters)."""
    layers = targets(model)
    if kind == 'cslora':
        total = pool or lora_params(model, rank)
        fan_in = max(m.in_features for _, m in layers)
        model.adapter_pools = SketchPools(total // 2, total - total // 2, fan_in)
    for salt, (name, m) in enumerate(layers):
        parent = model.get_submodule(name.rsplit('.', 1)[0])
        wrapped = LoRALinear(m, rank) if kind == 'lora' else SketchLoRALinear(m, rank, model.adapter_pools, salt)
        setattr(parent, name.rsplit('.', 1)[1], wrapped)
    return model

def adapter_parameters(model):
    """The trainable parameters of the adapters (all a fine-tune updates)."""
    return [p for n, p in model.named_parameters() if n.startswith('adapter_pools.') or n.endswith(('.A', '.B'))]

def adapter_names(model):
    return [n for n, p in model.named_parameters() if any(p is q for q in adapter_parameters(model))]

def base_state(state, model):
    """A checkpoint's weights renamed for the adapted model: a wrapped Linear's weight is `<name>.base.weight`."""
    own = model.state_dict()
    def name(k):
        head, _, leaf = k.rpartition('.')
        return f"{head}.base.{leaf}" if k not in own and f"{head}.base.{leaf}" in own else k
    return {name(k): v for k, v in state.items()}


OPTIONS = Group('fine-tuning with adapters (extensions/mdx/cs_lora.py; with init_from=<ckpt.pt>, only the adapters train)', dict(
    adapter=Option('none', "'none' | 'lora' | 'cslora' (Count-Sketch LoRA: entries hashed from a shared pool)",
                   choices=('none', 'lora', 'cslora')),
    adapter_rank=Option(8, 'rank of each adapter (attn.c_attn and mlp.c_fc of every block)', above=0),
    adapter_pool=Option(0, "cslora: pool parameters in all (0 = LoRA's count at adapter_rank: equal parameters)", at_least=0),
), part='adapters')


class Adapters(Extension):
    """Adapters are attached after the init (the base weights are the model's own), not a kind of part; their
    parameters are counted apart from the backbone (model.Extension)."""

    def after_init(self, model, shapes_only):
        a = model.config.adapters
        if a.adapter != 'none':
            attach(model, a.adapter, a.adapter_rank, a.adapter_pool)

    def param_counts(self, model):
        return {'adapter': sum(p.numel() for p in adapter_parameters(model))}

    fine_tune_settings = ('adapter', 'adapter_rank', 'adapter_pool')

    def base_state(self, state, model):
        return base_state(state, model), adapter_names(model)

    def after_base(self, model):
        """Fine-tuning with adapters: only the adapters train."""
        if model.config.adapters.adapter != 'none':
            trainable = {id(p) for p in adapter_parameters(model)}
            for p in model.parameters():
                p.requires_grad_(id(p) in trainable)
