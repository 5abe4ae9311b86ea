"""
The paper's open questions (§6.3, §7.2) as variants of engram.py's parts, chosen once at construction.
engram.py is the paper's model; each class here shows only what its variant changes.

  gate_keys='decoupled'      DecoupledKeys     W_K^hot for hot positions, W_K^cold for cold ones (§6.3)
  gate_inputs=(...)          GateFeatures      is_hot / log(1+count) / log(collision degree) in the gate logit (§7.2)
  engram_gate='signed_sqrt'  SignedSqrt        the DeepSeek demo's compression of the gate logit
  engram_short_conv=True     ShortConvOut      the DeepSeek demo's causal depthwise conv after the gate
  hot_index='hashed'         HashedHotRows     membership-only Nine: hot rows indexed by K hashes (§7.2)
  hot_collision=c            CollidingHotRows  N_hot hot keys share ceil(N_hot / c) hot rows (§5.2)
  hot_dropout=p              hot_row_dropout   dropout of whole hot rows, training only (§7.2)
  engram_shared_tables=False, hot_layers       the table layout (EngramMemory.reads)
  wk_decay, wk_reset_interval, hot_weight_decay  after each optimizer step: optim.py
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from engram import EngramGate, EngramMemory

GATE_INPUTS = ('is_hot', 'log_freq', 'collision')

# -----------------------------------------------------------------------------
# gate variants (cooperative mixins in front of engram.EngramGate)

class DecoupledKeys:
    """§6.3 "W_K intervention": a separate key projection for cold positions (w_k serves hot ones)."""

    def __init__(self, config, d_mem):
        super().__init__(config, d_mem)
        self.w_k_cold = nn.Linear(d_mem, config.n_embd, bias=False)

    def key(self, e, fwd):
        return torch.where(fwd.route.is_hot.unsqueeze(-1), self.w_k(e), self.w_k_cold(e))


class GateFeatures:
    """§7.2 "enhancing gating input": per-position features enter the gate logit linearly. The weight
    starts at zero (post_init), so training starts from the paper's gate."""

    def __init__(self, config, d_mem):
        super().__init__(config, d_mem)
        self.names = config.gate_inputs
        self.w_feat = nn.Linear(n_gate_features(config), 1, bias=False)

    def post_init(self):
        nn.init.zeros_(self.w_feat.weight)

    def logit(self, h, k, fwd):
        f = fwd.once('gate_features', lambda: gate_features(self.names, fwd))
        return super().logit(h, k, fwd) + self.w_feat(f).squeeze(-1)


class SignedSqrt:
    """DeepSeek demo: compresses large gate logits before the sigmoid."""

    def logit(self, h, k, fwd):
        s = super().logit(h, k, fwd)
        return s.sign() * s.abs().clamp_min(1e-6).sqrt()


class ShortConvOut:
    """DeepSeek demo: a causal depthwise conv over the gated memory, added to it."""

    def __init__(self, config, d_mem):
        super().__init__(config, d_mem)
        self.short_conv = ShortConv(config.n_embd, max(config.ngram_orders))

    def forward(self, h, e, fwd):
        out, alpha = super().forward(h, e, fwd)
        return out + self.short_conv(out), alpha


class ShortConv(nn.Module):
    """Causal depthwise conv (kernel 4, dilation = max order), zero-initialized: starts as the identity."""

    def __init__(self, dim, dilation, kernel=4):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.norm = nn.RMSNorm(dim, eps=1e-6)
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim, dilation=dilation, bias=False)
        nn.init.zeros_(self.conv.weight)

    def forward(self, x):
        y = F.pad(self.norm(x).transpose(1, 2), (self.pad, 0))
        return F.silu(self.conv(y)).transpose(1, 2)


def gate_class(config):
    """engram.EngramGate with the config's variants in front of it (order matters: the logit is
    squashed after the features are added, as in the DeepSeek demo)."""
    parts = [p for p, on in ((ShortConvOut, config.engram_short_conv), (SignedSqrt, config.engram_gate == 'signed_sqrt'),
                             (GateFeatures, bool(config.gate_inputs)), (DecoupledKeys, config.gate_keys == 'decoupled')) if on]
    return type('+'.join(p.__name__ for p in parts) + '+EngramGate', (*parts, EngramGate), {}) if parts else EngramGate

# -----------------------------------------------------------------------------
# memory variants (mixins in front of engram.EngramMemory)

class HashedHotRows:
    """Membership-only Nine: the MPHF decides hot vs cold, but hot rows are indexed by the K head hashes
    (with collisions), keeping Nine's layout and parameters: tiering without collision-free indexing."""

    def hot_row(self, keys, slots, oi, order):
        return self.heads(keys, oi, order, self.hot_rows)


class CollidingHotRows:
    """Controlled collisions: the N_hot hot keys share ceil(N_hot / c) rows (slot mod rows)."""

    @staticmethod
    def n_hot_rows(config):
        return -(-config.hot_size // config.hot_collision)

    def hot_row(self, keys, slots, oi, order):
        return (slots % self.hot_rows).unsqueeze(-1)


def memory_class(config):
    parts = [p for p, on in ((HashedHotRows, config.hot_index == 'hashed'), (CollidingHotRows, config.hot_collision > 1)) if on]
    return type('+'.join(p.__name__ for p in parts) + '+EngramMemory', (*parts, EngramMemory), {}) if parts else EngramMemory

# -----------------------------------------------------------------------------
# what variants need from the data and from each forward pass

def needs_hot(config, noise):
    """Whether training forwards must compute hot slots (the paper's Hash and baseline do not)."""
    return (config.memory == 'nine' or config.gate_keys == 'decoupled' or 'is_hot' in config.gate_inputs
            or (noise is not None and noise.needs_hot))

def needs_counts(config):
    """Whether the model needs the training count of every distinct n-gram (loaded into the index)."""
    return config.memory != 'none' and bool({'log_freq', 'collision'} & set(config.gate_inputs))

def finish(model):
    """Data-derived parts of variants, at the end of GPT.__init__: the collision degree of every table row."""
    if model.memory is not None and 'collision' in model.config.gate_inputs:
        model.memory.register_buffer('occupancy', occupancy(model.memory, model.index), persistent=False)

@torch.no_grad()
def occupancy(memory, index):
    """Collision degree of every table row: how many distinct training n-grams read it."""
    occ = torch.zeros(memory.rows_per_set, device=memory.hot_base.device)
    for oi, o in enumerate(memory.orders):
        keys = getattr(index, f'count_keys_o{o}')
        r = memory.order_rows(keys, index.hot_slots(keys, o), oi, o)
        occ += torch.bincount(r.flatten(), minlength=memory.rows_per_set).float()
    return occ

def n_gate_features(config):
    n_orders, heads = len(config.ngram_orders), config.engram_heads
    names = config.gate_inputs
    return ('is_hot' in names) + ('log_freq' in names) * n_orders + ('collision' in names) * n_orders * heads

def gate_features(names, fwd):
    """Extra gate inputs per position (§7.2): is_hot flag, log(1 + training count) of each order's
    n-gram, log(collision degree) of each row read. (B, T, F), computed once per forward."""
    route, index, memory = fwd.route, fwd.model.index, fwd.model.memory
    f = []
    if 'is_hot' in names:
        f.append(route.is_hot.float().unsqueeze(-1))
    if 'log_freq' in names:
        for o in index.orders:
            f.append(torch.log1p(index.train_counts(route.keys[o], o).float()).unsqueeze(-1))
    if 'collision' in names:
        f.append(torch.log(memory.occupancy[fwd.rows(True)].clamp(min=1)))
    return torch.cat(f, -1)

def memory_regularizers(config, noise):
    """Training-time changes of the memory vector e: MD-mix noise on (hot/cold) rows, hot-row dropout."""
    regs = []
    if noise is not None and noise.sigmas.get('mem', 0) > 0:
        regs.append(lambda e, fwd: fwd.noise.memory(e, fwd.route.is_hot_order))
    if config.memory == 'nine' and config.hot_dropout > 0:
        regs.append(lambda e, fwd: hot_row_dropout(e, fwd.route.is_hot_order, config.hot_dropout))
    return regs

def hot_row_dropout(e, is_hot_order, p):
    """Dropout of whole hot memory rows (per order), inverted scaling: explicit regularization of the
    collision-free hot tier (§7.2). is_hot_order (O, B, T)."""
    hot = is_hot_order.permute(1, 2, 0)                                              # (B, T, O)
    drop = hot & (torch.rand(hot.shape, device=e.device) < p)
    scale = torch.where(drop, 0.0, torch.where(hot, 1 / (1 - p), 1.0)).to(e.dtype)
    return (e.view(*hot.shape, -1) * scale.unsqueeze(-1)).view_as(e)
