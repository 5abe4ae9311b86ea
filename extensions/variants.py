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
  engram_shared_tables=False PerLayerTables    each Engram layer its own tables (engram.EngramMemory.reads)
  hot_layers=(...)           SomeHotLayers     only these layers read the hot tier
  wk_decay, wk_reset_interval, hot_weight_decay  after each optimizer step: engramlib/optim.py
  hot_fingerprint_bits=b     FingerprintIndex  Algorithm 1 as written: membership by a b-bit fingerprint
  hot_collision_mode='semantic'  SemanticHotRows  hot keys share rows with keys of the same likely next tokens
  hot_ramp_iters=R           hot_phase_in      hot reads blend in from the cold read over R iters (training)
  hot_reg_ramp_iters=R       ramp              hot_dropout / hot_weight_decay grow from 0 over R iters
  gate_credit=w              gate_credit_loss  penalizes alpha where the memory read does not lower the loss
  hot_teacher=w              hot_teacher_loss  hot reads teach the cold rows of the same n-grams
  memory_reads='shuffled'    ShuffledReads     the control: rows drawn at random per read, a memory that cannot memorize
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import mdmix
from configurator import ConfigError
from engram import ID_BITS, NgramIndex, has_hot_tier, has_memory
from model import Extension
from engramlib import optim
from engramlib.options import Group, Option

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
        self.names = config.variants.gate_inputs
        self.w_feat = nn.Linear(n_gate_features(config), 1, bias=False)

    def post_init(self, model):
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


def gate_mixins(config):
    """The gate variants the config turns on, to put in front of engram.EngramGate (order matters: the logit is
    squashed after the features are added, as in the DeepSeek demo)."""
    v = config.variants
    return [p for p, on in ((ShortConvOut, v.engram_short_conv), (SignedSqrt, v.engram_gate == 'signed_sqrt'),
                            (GateFeatures, bool(v.gate_inputs)), (DecoupledKeys, v.gate_keys == 'decoupled')) if on]

# -----------------------------------------------------------------------------
# memory variants (mixins in front of a memory kind, engram.MEMORY)

class HashedHotRows:
    """Membership-only Nine: the MPHF decides hot vs cold, but hot rows are indexed by the K head hashes
    (with collisions), keeping Nine's layout and parameters: tiering without collision-free indexing."""

    def hot_row(self, keys, slots, oi, order):
        return self.heads(keys, oi, order, self.hot_rows)


class CollidingHotRows:
    """Controlled collisions: the N_hot hot keys share ceil(N_hot / c) rows (slot mod rows)."""

    @staticmethod
    def n_hot_rows(config):
        return -(-config.hot_size // config.variants.hot_collision)

    def hot_row(self, keys, slots, oi, order):
        return (slots % self.hot_rows).unsqueeze(-1)


class SemanticHotRows(CollidingHotRows):
    """Semantically controlled collisions (§6.2 soft clustering): the hot keys that share a row are the ones
    whose most likely next tokens agree. Each order's slot -> row map (`semantic_rows_o{n}`) is built from
    the training counts by semantic_rows (variants.finish); the rate of sharing is hot_collision's."""

    def hot_row(self, keys, slots, oi, order):
        return getattr(self, f'semantic_rows_o{order}')[slots.clamp(min=0)].unsqueeze(-1)


class ShuffledReads:
    """memory_reads='shuffled': a memory that cannot memorize (the control of issue 47). Every position reads rows
    drawn at random from its table set, afresh at every forward, so no row belongs to any n-gram; the parameters, the
    rows read per position, the gate and the optimizer's traffic per row are Hash's / Nine's. What such a model
    gains over the baseline is not memory; what Hash or Nine gain beyond it is. The route (and so the is_hot labels
    of the metrics) is the memory's own."""

    def rows(self, route, use_hot=True):
        rows = super().rows(route, use_hot)
        return torch.randint(0, self.rows_per_set, rows.shape, device=rows.device)


class PerLayerTables:
    """engram_shared_tables=False: each Engram layer reads its own set of tables."""

    @staticmethod
    def n_table_sets(config):
        return len(config.engram_layers)


class SomeHotLayers:
    """hot_layers: only these Engram layers read the hot tier (the others read every n-gram's cold rows)."""

    @staticmethod
    def hot_layers(config):
        return config.variants.hot_layers


def memory_mixins(config):
    """The memory variants the config turns on, to put in front of its memory kind (engram.MEMORY)."""
    v = config.variants
    colliding = SemanticHotRows if v.hot_collision_mode == 'semantic' else CollidingHotRows
    return [p for p, on in ((ShuffledReads, v.memory_reads == 'shuffled'),
                            (PerLayerTables, not v.engram_shared_tables), (SomeHotLayers, bool(v.hot_layers)),
                            (HashedHotRows, v.hot_index == 'hashed'), (colliding, v.hot_collision > 1)) if on]

# -----------------------------------------------------------------------------
# membership variant (a subclass of engram.NgramIndex)

class FingerprintIndex(NgramIndex):
    """Algorithm 1 as the paper writes it: idx = MPHF(g); g is hot iff fp_table[idx] == fp(g), a b-bit
    fingerprint, instead of the exact stored-key check. A member always passes (its slot holds its own
    fingerprint); a non-member passes with probability 2^-b and is routed hot, to the row of the member at
    its slot: a false positive. For a non-member, bbhash returns an arbitrary slot (or none); here that slot
    is a uniform MD-mix hash of the key (the same on any device), so the false-positive share of non-member
    queries is 2^-b in expectation (fingerprint_analysis in report/databaseline.py measures it)."""

    def __init__(self, canonical, hot_index, orders, counts=None, bits=8):
        super().__init__(canonical, hot_index, orders, counts)
        self.bits = bits
        for o in self.orders:
            keys, slots = hot_index[o]
            table = torch.zeros(len(keys), dtype=torch.long)
            table[slots.long()] = fingerprint_and_slot(keys.long(), o, bits, max(1, len(keys)))[0]
            self.register_buffer(f'fp_table_o{o}', table, persistent=False)

    def hot_slots(self, keys, order):
        exact = super().hot_slots(keys, order)
        table = getattr(self, f'fp_table_o{order}')
        fp, pseudo = fingerprint_and_slot(keys, order, self.bits, max(1, table.numel()))
        passes = table[pseudo] == fp if table.numel() else torch.zeros_like(keys, dtype=torch.bool)
        return torch.where(exact >= 0, exact, torch.where(passes, pseudo, torch.full_like(pseudo, -1)))

def fingerprint_and_slot(keys, order, bits, n_slots):
    """The b-bit fingerprint of each key and the slot an MPHF would give a non-member (emulated)."""
    h = mdmix.mdmix_hash(keys, torch.tensor([0x5EED0 + order, 0xF1C0 + order], device=keys.device), 1 << 62)
    return h[..., 0] & ((1 << bits) - 1), h[..., 1] % n_slots

def index_class(config):
    """The fingerprint variant of engram.NgramIndex (with its bits bound), or None."""
    if config.variants.hot_fingerprint_bits:
        return lambda *a, **k: FingerprintIndex(*a, bits=config.variants.hot_fingerprint_bits, **k)
    return None

# -----------------------------------------------------------------------------
# what variants need from the data and from each forward pass

def needs_hot(config):
    """Whether training forwards must compute hot slots for a variant (Nine always does; Hash not for itself)."""
    v = config.variants
    return v.gate_keys == 'decoupled' or 'is_hot' in v.gate_inputs

def needs_counts(config):
    """Whether the model needs the training count of every distinct n-gram (loaded into the index)."""
    v = config.variants
    semantic = has_hot_tier(config.memory) and v.hot_collision > 1 and v.hot_collision_mode == 'semantic'
    return has_memory(config.memory) and (bool({'log_freq', 'collision'} & set(v.gate_inputs)) or semantic)

def finish(model, shapes_only=False):
    """Data-derived parts of variants, at the end of GPT.__init__ (not for a shapes-only model): the collision
    degree of every table row; the semantic slot -> row maps."""
    if shapes_only:
        return
    if model.memory is not None and 'collision' in model.config.variants.gate_inputs:
        model.memory.register_buffer('occupancy', occupancy(model.memory, model.index), persistent=False)
    if isinstance(model.memory, SemanticHotRows):
        for o in model.memory.orders:
            rows = semantic_rows(model.index, o, model.config.variants.hot_collision)
            model.memory.register_buffer(f'semantic_rows_o{o}', rows, persistent=False)

@torch.no_grad()
def semantic_rows(index, order, c):
    """Slot -> hot row for one order: hot keys sorted by their two most frequent next tokens in the training
    trigram counts (a bigram's own continuation; a trigram's backs off to its last two tokens; unseen
    contexts sort last), then c consecutive keys per row. So keys that predict the same tokens share a row."""
    keys, slots = getattr(index, f'hot_keys_o{order}'), getattr(index, f'hot_slots_o{order}')
    k3, c3 = index.count_keys_o3, index.count_vals_o3
    ctx, nxt = k3 >> ID_BITS, k3 & ((1 << ID_BITS) - 1)
    by = torch.argsort(-c3, stable=True)
    by = by[torch.argsort(ctx[by], stable=True)]                      # by context, most frequent next token first
    ctx, nxt = ctx[by], nxt[by]
    own = keys & ((1 << 2 * ID_BITS) - 1)                             # a bigram is its own context
    first = torch.searchsorted(ctx, own)
    last = len(ctx) - 1
    top = lambda i, ok: torch.where(ok & (ctx[i.clamp(max=last)] == own), nxt[i.clamp(max=last)], 1 << ID_BITS)
    top1 = top(first, first <= last)
    top2 = top(first + 1, first + 1 <= last)
    order_of = torch.argsort(top1 * ((1 << ID_BITS) + 1) + top2, stable=True)
    rows = torch.empty_like(slots)
    rows[slots[order_of]] = torch.arange(len(keys), device=keys.device) // c
    return rows

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
    names = config.variants.gate_inputs
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

def ramp(step, iters):
    """A schedule's weight at a step: step / iters, at most 1 (1 when iters is 0). A tensor for a tensor step."""
    return (torch.as_tensor(step, dtype=torch.float32) / iters).clamp(max=1) if iters else 1.0

def memory_regularizers(config, noise):
    """Training-time changes of the memory vector e (each gets e, the ForwardPass and the read's use_hot and
    table set): MD-mix noise on (hot/cold) rows, the phased hot tier, hot-row dropout (with its ramp)."""
    regs = []
    if noise is not None and noise.sigmas.get('mem', 0) > 0:
        regs.append(lambda e, fwd, use_hot, table_set: fwd.noise.memory(e, fwd.route.is_hot_order))
    v = config.variants
    if has_hot_tier(config.memory) and v.hot_ramp_iters:
        regs.append(lambda e, fwd, use_hot, table_set: hot_phase_in(e, fwd, use_hot, table_set, v.hot_ramp_iters))
    if has_hot_tier(config.memory) and v.hot_dropout > 0:
        regs.append(lambda e, fwd, use_hot, table_set: hot_row_dropout(
            e, fwd.route.is_hot_order, v.hot_dropout * ramp(fwd.step, v.hot_reg_ramp_iters)))
    return regs

def hot_row_dropout(e, is_hot_order, p):
    """Dropout of whole hot memory rows (per order), inverted scaling: explicit regularization of the
    collision-free hot tier (§7.2). is_hot_order (O, B, T)."""
    hot = is_hot_order.permute(1, 2, 0)                                              # (B, T, O)
    drop = hot & (torch.rand(hot.shape, device=e.device) < p)
    scale = torch.where(drop, 0.0, torch.where(hot, 1 / (1 - p), 1.0)).to(e.dtype)
    return (e.view(*hot.shape, -1) * scale.unsqueeze(-1)).view_as(e)

def hot_phase_in(e, fwd, use_hot, table_set, iters):
    """Phased hot-tier weight (§7.2 dynamic training): during training a hot n-gram reads
    w * hot row + (1 - w) * its cold rows, w = step / iters up to 1; so early on it learns through the
    shared cold rows and the collision-free row takes over. Evaluation always reads the hot row."""
    if not use_hot:
        return e
    w = ramp(fwd.step, iters)
    hot = fwd.route.is_hot_order.permute(1, 2, 0).unsqueeze(-1)                     # (B, T, O, 1)
    cold = fwd.model.memory(fwd.rows(False), table_set).view(*hot.shape[:3], -1)
    mixed = w * e.view_as(cold) + (1 - w) * cold
    return torch.where(hot, mixed.to(e.dtype), e.view_as(cold)).reshape(e.shape)

# -----------------------------------------------------------------------------
# auxiliary losses (training only): each gets the ForwardPass, the detached per-position losses and targets

def aux_losses(config):
    out = []
    v = config.variants
    if has_memory(config.memory) and v.gate_credit:
        out.append(lambda fwd, losses, targets: v.gate_credit * gate_credit_loss(fwd, losses, targets))
    if has_hot_tier(config.memory) and v.hot_teacher:
        out.append(lambda fwd, losses, targets: v.hot_teacher * hot_teacher_loss(fwd))
    return out

def gate_credit_loss(fwd, losses, targets):
    """§7.2 (4) gate credit assignment. The memory's gain at position t is
        gain_t = loss_t(memory vector zeroed in every Engram layer) - loss_t(model),
    both without gradient (the first from a second forward with the same weights, route and noise: a zero
    e gives a zero gate output, W_V having no bias). The loss is mean over Engram layers and positions of
    alpha_t * 1[gain_t <= 0]: opening the gate where the memory read does not help costs. (An extra
    no-grad forward per micro-step.)"""
    model = fwd.model
    with torch.no_grad():
        off = type(fwd)(model, fwd.idx, fwd.route, fwd.noise, None, fwd.step)
        zero = torch.zeros(*fwd.idx.shape, model.memory.dim, device=fwd.idx.device)
        off.computed = {('e', use_hot, table_set): zero for use_hot, table_set in model.memory.reads.values()}
        losses_off = model.token_losses(model.hidden(off), targets, off)[1]
        useless = (losses_off <= losses).view(fwd.idx.shape)
    return (torch.stack(fwd.alphas) * useless).mean()

def hot_teacher_loss(fwd):
    """Hot embeddings as a teacher (§7.2 dynamic training): at each position and order where the n-gram is
    hot, its cold read (the K hashed rows Nine does not read for it) is pulled toward its hot read, held
    fixed: mean squared distance over hot (position, order) pairs. Tables of set 0."""
    memory = fwd.model.memory
    hot = fwd.route.is_hot_order.permute(1, 2, 0)                                   # (B, T, O)
    e_hot = memory(fwd.rows(True)).detach().view(*hot.shape, -1)
    e_cold = memory(fwd.rows(False)).view(*hot.shape, -1)
    sq = (e_cold.float() - e_hot.float()).pow(2).mean(-1)
    return (sq * hot).sum() / hot.sum().clamp(min=1)


# -----------------------------------------------------------------------------
# the variants' options: all off by default = the paper's model

def acting(c, keys, defaults=()):
    """The keys of c set away from off (0, (), False) or from their given defaults."""
    return [k for k in keys if c[k]] + [k for k, d in defaults if c[k] != d]

def refuse_without_memory(keys):
    if keys:
        raise ConfigError(f"memory='none' has no Engram memory, but {', '.join('--' + k for k in keys)} "
                          f"act on it; set --memory='hash' or 'nine', or drop them")

def refuse_on_hash(keys):
    if keys:
        raise ConfigError(f"{', '.join('--' + k for k in keys)} act on Nine's hot tier; Hash has none (--memory='nine')")

def check_variants(c):
    if c['hot_collision_mode'] != 'random' and c['hot_collision'] == 1:
        raise ConfigError(f"--hot_collision_mode={c['hot_collision_mode']!r} chooses which hot keys share rows; set --hot_collision > 1")
    if not has_memory(c['memory']):
        on = acting(c, ('hot_dropout', 'gate_credit', 'gate_inputs', 'hot_layers'),
                    (('gate_keys', 'shared'), ('hot_index', 'mphf'), ('engram_gate', 'sigmoid'), ('memory_reads', 'keyed')))
        refuse_without_memory(on)
        return
    if not has_hot_tier(c['memory']):
        on = acting(c, ('hot_dropout', 'hot_layers', 'hot_fingerprint_bits', 'hot_teacher', 'hot_ramp_iters', 'hot_reg_ramp_iters'),
                    (('hot_index', 'mphf'), ('hot_collision', 1), ('hot_collision_mode', 'random')))
        refuse_on_hash(on)
    bad = [g for g in c['gate_inputs'] if g not in GATE_INPUTS]
    if bad:
        raise ConfigError(f"gate_inputs {bad} unknown; choose from {GATE_INPUTS}")
    bad = [l for l in c['hot_layers'] if l not in c['engram_layers']]
    if bad:
        raise ConfigError(f"hot_layers {bad} are not Engram layers {list(c['engram_layers'])}")
    if c['hot_collision_mode'] == 'semantic' and 3 not in c['ngram_orders']:
        raise ConfigError("hot_collision_mode='semantic' reads next-token counts from the trigram counts: ngram_orders must include 3")

VARIANTS = Group("the paper's variants (extensions/variants.py; §6.3, §7.2, the DeepSeek demo): all off by default = the paper's model", dict(
    engram_shared_tables=Option(True, 'False: each Engram layer has its own tables (3x the table parameters)'),
    engram_gate=Option('sigmoid', "'sigmoid' (paper Eq. 4) | 'signed_sqrt' (DeepSeek demo)", choices=('sigmoid', 'signed_sqrt')),
    engram_short_conv=Option(False, "DeepSeek demo's causal depthwise conv after the gate"),
    hot_index=Option('mphf', "'mphf' (collision-free) | 'hashed': membership-only Nine (hot rows indexed by hashing, with collisions)",
                     choices=('mphf', 'hashed')),
    hot_collision=Option(1, 'controlled collisions: N_hot hot keys into ceil(N_hot / c) rows', at_least=1),
    gate_keys=Option('shared', "'shared' W_K | 'decoupled': W_K^hot and W_K^cold", choices=('shared', 'decoupled')),
    gate_inputs=Option((), f"any of {GATE_INPUTS}: features in the gate logit"),
    hot_layers=Option((), 'Engram layers that read the hot tier; () = all'),
    hot_dropout=Option(0.0, 'dropout of whole hot rows', at_least=0, below=1),
    hot_fingerprint_bits=Option(0, "0: exact membership; 8/16: Algorithm 1's b-bit fingerprint (non-members may pass)",
                                at_least=0, at_most=32),
    hot_collision_mode=Option('random', "with hot_collision > 1: 'random' (by MPHF slot) | 'semantic' (by likely next tokens)",
                              choices=('random', 'semantic')),
    gate_credit=Option(0.0, 'weight of the gate credit loss (alpha where the memory does not lower the loss)', at_least=0),
    hot_teacher=Option(0.0, "weight of the loss pulling hot n-grams' cold rows to their hot read", at_least=0),
    hot_ramp_iters=Option(0, 'phased hot tier: hot reads blend in from the cold read over these iters', at_least=0),
    hot_reg_ramp_iters=Option(0, 'hot_dropout / hot_weight_decay grow linearly from 0 over these iters', at_least=0),
    memory_reads=Option('keyed', "'keyed' (the paper's) | 'shuffled': every read a random row, a memory that cannot memorize "
                        "(the control of docs/controls.md)", choices=('keyed', 'shuffled')),
), part='variants', check=check_variants)

def check_maintenance(c):
    on = acting(c, ('hot_weight_decay', 'wk_decay'))
    if not has_memory(c['memory']):
        refuse_without_memory(on)
    if not has_hot_tier(c['memory']):
        refuse_on_hash(acting(c, ('hot_weight_decay',)))
    if c['hot_reg_ramp_iters'] and not (c['hot_dropout'] or c['hot_weight_decay']):
        raise ConfigError("--hot_reg_ramp_iters ramps --hot_dropout / --hot_weight_decay; set one of them")

MAINTENANCE = Group("the variants after each optimizer step (optim.gate_maintenance)", dict(
    hot_weight_decay=Option(0.0, 'extra decoupled weight decay on hot rows (per step: w -= lr * this * w)', at_least=0),
    wk_decay=Option(0.0, 'W_K forgetting: w_k *= 1 - wk_decay after every step', at_least=0),
    wk_reset_interval=Option(0, 're-initialize W_K every this many iters (0 = never)', at_least=0),
), check=check_maintenance)


class Variants(Extension):
    """The variants' hooks into the paper's model (model.Extension): extensions/__init__.py puts one in the model's config."""
    memory_mixins, gate_mixins, index_class = staticmethod(memory_mixins), staticmethod(gate_mixins), staticmethod(index_class)
    needs_hot, needs_counts, aux_losses = staticmethod(needs_hot), staticmethod(needs_counts), staticmethod(aux_losses)
    regularizers, after_init = staticmethod(memory_regularizers), staticmethod(finish)

    def host_table_conflicts(self, cfg):
        return [k for k in ('hot_ramp_iters', 'hot_teacher', 'hot_weight_decay') if cfg[k]] + ['memory_reads'] * (cfg['memory_reads'] != 'keyed')

    def after_step(self, model, it, lr, cfg):
        if cfg['wk_decay'] or cfg['wk_reset_interval'] or cfg['hot_weight_decay']:
            optim.gate_maintenance(model, it, lr, cfg['wk_decay'], cfg['wk_reset_interval'],
                                   cfg['hot_weight_decay'] * ramp(it, cfg['hot_reg_ramp_iters']))
