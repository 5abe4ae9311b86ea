"""
Engram and Engram-Nine conditional memory (paper §3), in plain PyTorch.

Data flow, once per forward, shared by every Engram layer:
  token ids --P--> canonical ids --> suffix n-gram keys g_{t,n} (exact, 64-bit)
    Hash: z_{t,n,k} = phi_{n,k}(g_{t,n})                                   (Eq. 1)
    Nine: hot g (MPHF member) -> one row of E_hot[n] at its MPHF slot      (Algorithm 1)
          cold g              -> K hashed rows, as Hash
  e_t = concat over orders and heads                                       (Eq. 2)
then in each Engram layer: k = W_K e, v = W_V e (Eq. 3), alpha = gate (Eq. 4), out = alpha*v (Eq. 5).

All tables live in one (rows, d) parameter so that a whole memory read is one `embedding` call:
Hash and Nine differ only in which row each (order, head) reads.
"""
import math
import unicodedata

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mdmix

ID_BITS = 21                 # canonical ids per n-gram key slot: 3 x 21 = 63 bits, vocabularies < 2M
ID_MASK = (1 << ID_BITS) - 1
MASK63 = (1 << 63) - 1

# -----------------------------------------------------------------------------
# Tokenizer compression P: V -> V' (paper §3.1, SPEC §4)

def canonical_text(text):
    """NFKC -> NFD -> drop combining marks -> lowercase -> whitespace runs to one space -> strip."""
    s = unicodedata.normalize('NFD', unicodedata.normalize('NFKC', text))
    s = ''.join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = ' '.join(s.split())
    return s if s else ' '   # a whitespace-only token keeps one canonical " "

def canonical_map(decoded):
    """decoded[i] = token i's text, or None when undecodable (it keeps a key of its own).
    Returns int32 array of length len(decoded)+1: canonical id per token id, plus the pad id
    (used before the stream's first token) at the end, and the number of canonical ids (no pad)."""
    ids, out = {}, np.empty(len(decoded) + 1, dtype=np.int32)
    for i, text in enumerate(decoded):
        key = ('raw', i) if text is None else canonical_text(text)
        out[i] = ids.setdefault(key, len(ids))
    out[-1] = len(ids)       # pad: a canonical id no real token has
    return out, len(ids)

# -----------------------------------------------------------------------------
# Exact n-gram keys: the n canonical ids ending at t, packed 21 bits each (most recent lowest)

def ngram_keys(cids, order, ctx):
    """cids (..., ctx+T) canonical ids whose first `ctx` columns precede the window.
    Returns (..., T) int64 keys of the `order`-grams ending at each window position."""
    T = cids.shape[-1] - ctx
    key = torch.zeros_like(cids[..., ctx:])
    for i in range(order):   # i = how far back
        key = key | (cids[..., ctx - i: ctx - i + T].long() << (ID_BITS * i))
    return key

def unpack_ids(keys, order):
    """(..., ) keys -> (..., order) ids, most recent first."""
    shifts = torch.arange(order, device=keys.device) * ID_BITS
    return (keys.unsqueeze(-1) >> shifts) & ID_MASK

# -----------------------------------------------------------------------------
# Hot tier membership: exact, two implementations that must agree position by position

def hot_lookup(keys, sorted_keys, sorted_slots):
    """Vectorized membership on any device: searchsorted in the hot keys (sorted), stored-key check.
    Returns the MPHF slot of each key, -1 for cold keys."""
    if sorted_keys.numel() == 0:
        return torch.full_like(keys, -1)
    pos = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
    hit = sorted_keys[pos] == keys
    return torch.where(hit, sorted_slots[pos], torch.full_like(keys, -1))

def hot_lookup_mphf(keys, mphf, slot_keys):
    """Reference path, as Algorithm 1: idx = mphf.query(g), then the key stored at idx must equal g
    (the MPHF returns a pseudo-index, or nothing, for non-members). keys: int64 numpy array."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    idx = mphf.lookup_many(keys.view(np.uint64)).astype(np.int64)   # UINT64_MAX -> -1
    ok = (idx >= 0) & (idx < len(slot_keys))
    ok[ok] = slot_keys[idx[ok]] == keys[ok]
    return np.where(ok, idx, -1)

# -----------------------------------------------------------------------------
# Multi-head hashing phi_{n,k}: multiply-xor of the ids with odd 64-bit multipliers + fmix64 finalizer

def _srl(x, s):
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)

def _i64(u):
    return u - (1 << 64) if u >= (1 << 63) else u

FMIX1, FMIX2 = _i64(0xFF51AFD7ED558CCD), _i64(0xC4CEB9FE1A85EC53)

def fmix64(h):
    """MurmurHash3's finalizer: every input bit reaches every output bit, so `% size` stays
    uniform for any table size (prime or not)."""
    h = h ^ _srl(h, 33)
    h = h * FMIX1
    h = h ^ _srl(h, 33)
    h = h * FMIX2
    return h ^ _srl(h, 33)

def hash_multipliers(seed, n_orders, heads, max_order):
    """Random odd 64-bit multipliers, one per (order, head, id position), as int64."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 2**63, size=(n_orders, heads, max_order), dtype=np.int64) * 2 + 1
    return torch.from_numpy(m)

def multiply_xor_hash(keys, order, mult, size):
    """keys (...,) of one order, mult (heads, max_order) -> (..., heads) indices in [0, size)."""
    ids = unpack_ids(keys, order)                                  # (..., order)
    h = ids.unsqueeze(-2) * mult[:, :order]                        # (..., heads, order), wraps mod 2^64
    x = h[..., 0]
    for i in range(1, order):
        x = x ^ h[..., i]
    return (fmix64(x) & MASK63) % size

# -----------------------------------------------------------------------------
# Modules

class NgramIndex(nn.Module):
    """token ids (with their preceding context) -> per order: exact keys and hot slots (-1 = cold).
    Holds the canonical map and the hot tiers as device buffers; they are data, not weights, so
    they are not saved in checkpoints (checkpoints record their checksums instead)."""

    def __init__(self, canonical, hot_index, orders):
        super().__init__()
        self.orders, self.max_order = tuple(orders), max(orders)
        self.register_buffer('canonical', torch.as_tensor(canonical, dtype=torch.long), persistent=False)
        for o in self.orders:
            keys, slots = hot_index[o]
            self.register_buffer(f'hot_keys_o{o}', keys.long(), persistent=False)
            self.register_buffer(f'hot_slots_o{o}', slots.long(), persistent=False)

    def set_counts(self, counts):
        """{order: (sorted distinct training keys, counts)}: for the log-frequency gate input."""
        for o, (k, c) in counts.items():
            self.register_buffer(f'count_keys_o{o}', torch.as_tensor(k).long(), persistent=False)
            self.register_buffer(f'count_vals_o{o}', torch.as_tensor(c).long(), persistent=False)

    def hot_slots(self, keys, order):
        """MPHF slot of each key of one order in its hot tier, -1 for cold keys."""
        return hot_lookup(keys, getattr(self, f'hot_keys_o{order}'), getattr(self, f'hot_slots_o{order}'))

    @property
    def pad_token(self):
        return self.canonical.numel() - 1     # the token id used before the stream's first token

    def forward(self, tokens, ctx, hot=True):
        """tokens (B, ctx+T). Returns {order: keys (B,T)}, {order: slots (B,T)} (slots only if hot)."""
        cids = self.canonical[tokens]
        keys = {o: ngram_keys(cids, o, ctx) for o in self.orders}
        slots = {o: self.hot_slots(keys[o], o) for o in self.orders} if hot else None
        return keys, slots


class EngramMemory(nn.Module):
    """All memory tables of all orders and heads as one (rows, d) embedding.
    Per order n the rows are laid out as [hot: R*K rows][cold head 0: M rows]...[cold head K-1: M rows]
    (R = N_hot hot rows; 0 for Hash). A hot row of E_hot[n] (K*d wide) is K consecutive d-rows, so Hash
    and Nine reads are both a single gather of (orders*K) d-rows per position.
    Future-work variants (paper §7.2): hot_index='hashed' indexes the hot rows with K hashes instead of
    the MPHF slot (tiering kept, collision-free indexing removed); hot_collision=c puts the N_hot hot keys
    into ceil(N_hot/c) rows (a chosen collision rate)."""

    def __init__(self, config):
        super().__init__()
        c = config
        self.orders, self.K, self.d = tuple(c.ngram_orders), c.engram_heads, c.engram_head_dim
        self.nine = c.memory == 'nine'
        self.table_size, self.hot_index = c.table_size, c.hot_index
        self.hot_rows = -(-c.hot_size // c.hot_collision) if self.nine else 0
        self.n_sets = 1 if c.engram_shared_tables else len(c.engram_layers)
        per_order = self.hot_rows * self.K + self.K * self.table_size
        self.rows_per_set = per_order * len(self.orders)
        self.table = nn.Embedding(self.n_sets * self.rows_per_set, self.d)
        base = torch.arange(len(self.orders)) * per_order
        self.register_buffer('hot_base', base, persistent=False)                              # (O,)
        self.register_buffer('cold_base', base[:, None] + self.hot_rows * self.K
                             + torch.arange(self.K) * self.table_size, persistent=False)     # (O, K)
        self.register_buffer('mult', hash_multipliers(c.engram_hash_seed, len(self.orders), self.K,
                                                      max(self.orders)), persistent=False)
        self.hash = c.engram_hash

    @property
    def dim(self):
        return len(self.orders) * self.K * self.d

    def heads(self, keys, oi, order, size=None):
        """phi_{n,k}(g) for all heads k of one order: (B,T) keys -> (B,T,K) indices in [0, size or M)."""
        size = size or self.table_size
        if self.hash == 'mdmix':
            return mdmix.mdmix_hash(keys, self.mult[oi, :, 0], size)
        return multiply_xor_hash(keys, order, self.mult[oi], size)

    def order_rows(self, keys, slots, oi, order, use_hot=True):
        """Rows read by one order's K heads: (..., K). Routing of Algorithm 1."""
        cold = self.cold_base[oi] + self.heads(keys, oi, order)                    # Eq. 1, cold tier
        if not (self.nine and use_hot):
            return cold
        s = slots.unsqueeze(-1)
        if self.hot_index == 'hashed':
            r = self.heads(keys, oi, order, self.hot_rows)
        else:
            r = s % self.hot_rows                                                  # c = 1: the MPHF slot itself
        hot = self.hot_base[oi] + r * self.K + torch.arange(self.K, device=s.device)
        return torch.where(s >= 0, hot, cold)                                      # Alg. 1 lines 3-10

    def rows(self, keys, slots, use_hot=True):
        """Row of every (order, head) read at each position: (B, T, O*K).
        use_hot=False sends every position down the cold path (per-layer strategies)."""
        return torch.cat([self.order_rows(keys[o], slots[o] if slots is not None else None, oi, o, use_hot)
                          for oi, o in enumerate(self.orders)], dim=-1)

    @torch.no_grad()
    def set_occupancy(self, keys, slots):
        """Collision degree of every table row: how many distinct training n-grams read it.
        keys/slots: {order: all distinct training keys, their hot slots}."""
        occ = torch.zeros(self.rows_per_set, device=self.hot_base.device)
        for oi, o in enumerate(self.orders):
            r = self.order_rows(keys[o], slots[o], oi, o)
            occ += torch.bincount(r.flatten(), minlength=self.rows_per_set).float()
        self.register_buffer('occupancy', occ, persistent=False)

    def hot_row_mask(self):
        """(rows,) bool: which table rows belong to a hot tier (for extra weight decay on hot rows)."""
        mask = torch.zeros(self.rows_per_set, dtype=torch.bool, device=self.hot_base.device)
        for b in self.hot_base.tolist():
            mask[b:b + self.hot_rows * self.K] = True
        return mask.repeat(self.n_sets)

    def forward(self, rows, layer_set=0):
        """e_t = concat over orders and heads (Eq. 2): (B, T, O*K*d)."""
        e = self.table(rows + layer_set * self.rows_per_set)
        return e.flatten(-2)


GATE_INPUTS = ('is_hot', 'log_freq', 'collision')

def gate_features(names, is_hot, keys, rows, index, memory):
    """Extra gate inputs per position (§7.2): is_hot flag, log(1 + training count) of each order's
    n-gram, log(collision degree) of each row read. (B, T, F), computed once per forward."""
    f = []
    if 'is_hot' in names:
        f.append(is_hot.float().unsqueeze(-1))
    if 'log_freq' in names:
        for o in index.orders:
            c = hot_lookup(keys[o], getattr(index, f'count_keys_o{o}'), getattr(index, f'count_vals_o{o}'))
            f.append(torch.log1p(c.clamp(min=0).float()).unsqueeze(-1))
    if 'collision' in names:
        f.append(torch.log(memory.occupancy[rows].clamp(min=1)))
    return torch.cat(f, -1)

def n_gate_features(names, n_orders, heads):
    return ('is_hot' in names) + ('log_freq' in names) * n_orders + ('collision' in names) * n_orders * heads

def hot_row_dropout(e, slots, p):
    """Dropout of whole hot memory rows (per order), inverted scaling: explicit regularization of the
    collision-free hot tier (§7.2)."""
    hot = torch.stack([s >= 0 for s in slots.values()], -1)                         # (B, T, O)
    drop = hot & (torch.rand(hot.shape, device=e.device) < p)
    scale = torch.where(drop, 0.0, torch.where(hot, 1 / (1 - p), 1.0)).to(e.dtype)
    return (e.view(*hot.shape, -1) * scale.unsqueeze(-1)).view_as(e)


class EngramGate(nn.Module):
    """One Engram layer's read-out: own W_K, W_V and norms over the shared memory vector."""

    def __init__(self, config, d_mem, n_features=0):
        super().__init__()
        self.w_k = nn.Linear(d_mem, config.n_embd, bias=False)
        # §6.3 "W_K intervention": a separate key projection for cold positions (w_k then serves hot ones)
        self.w_k_cold = nn.Linear(d_mem, config.n_embd, bias=False) if config.gate_keys == 'decoupled' else None
        # §7.2 "enhancing gating input": extra per-position features enter the gate logit linearly;
        # zero-initialized, so training starts from the paper's gate
        self.w_feat = nn.Linear(n_features, 1, bias=False) if n_features else None
        self.w_v = nn.Linear(d_mem, config.n_embd, bias=False)
        self.norm_h = nn.RMSNorm(config.n_embd, eps=1e-6)
        self.norm_k = nn.RMSNorm(config.n_embd, eps=1e-6)
        self.signed_sqrt = config.engram_gate == 'signed_sqrt'
        self.short_conv = ShortConv(config.n_embd, max(config.ngram_orders)) if config.engram_short_conv else None
        self.scale = 1 / math.sqrt(config.n_embd)

    def forward(self, h, e, is_hot=None, features=None):
        k, v = self.w_k(e), self.w_v(e)                                             # Eq. 3
        if self.w_k_cold is not None:
            k = torch.where(is_hot.unsqueeze(-1), k, self.w_k_cold(e))
        s = (self.norm_h(h) * self.norm_k(k)).sum(-1) * self.scale
        if self.w_feat is not None:
            s = s + self.w_feat(features).squeeze(-1)
        if self.signed_sqrt:   # DeepSeek demo variant: compresses large logits before the sigmoid
            s = s.sign() * s.abs().clamp_min(1e-6).sqrt()
        alpha = torch.sigmoid(s)                                                    # Eq. 4
        out = alpha.unsqueeze(-1) * v                                               # Eq. 5
        if self.short_conv is not None:
            out = out + self.short_conv(out)
        return out, alpha


class ShortConv(nn.Module):
    """DeepSeek demo option: causal depthwise conv (kernel 4, dilation = max order) after the gate."""

    def __init__(self, dim, dilation, kernel=4):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.norm = nn.RMSNorm(dim, eps=1e-6)
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim, dilation=dilation, bias=False)
        nn.init.zeros_(self.conv.weight)   # starts as the identity of the residual branch

    def forward(self, x):
        y = F.pad(self.norm(x).transpose(1, 2), (self.pad, 0))
        return F.silu(self.conv(y)).transpose(1, 2)
