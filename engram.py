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
This file is the paper's model only; the §6.3/§7.2 variants subclass its parts in extensions/variants.py.
"""
import math
import unicodedata

import numpy as np
import torch
import torch.nn as nn

from configurator import ConfigError

ID_BITS = 21                 # canonical ids per n-gram key slot: 3 x 21 = 63 bits, vocabularies < 2M
ID_MASK = (1 << ID_BITS) - 1
MASK63 = (1 << 63) - 1

# -----------------------------------------------------------------------------
# Tokenizer compression P: V -> V' (paper §3.1: ids that decode to the same normalized text share one id)

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

def ngram_keys(cids, order, n_prev):
    """cids (..., n_prev+T) canonical ids whose first `n_prev` columns precede the window.
    Returns (..., T) int64 keys of the `order`-grams ending at each window position."""
    T = cids.shape[-1] - n_prev
    key = torch.zeros_like(cids[..., n_prev:])
    for i in range(order):   # i = how far back
        key = key | (cids[..., n_prev - i: n_prev - i + T].long() << (ID_BITS * i))
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
    h = ids.unsqueeze(-2) * mult[:, :order].to(ids.device)         # (..., heads, order), wraps mod 2^64
    x = h[..., 0]
    for i in range(1, order):
        x = x ^ h[..., i]
    return (fmix64(x) & MASK63) % size

# the hash families of the heads by `engram_hash`, each (keys, order, mult (K, max_order), size) -> (..., K); the
# paper's is multiply-xor, mdmix.py registers the MD-mix one
HASHES = {'mulxor': multiply_xor_hash}

# -----------------------------------------------------------------------------
# Routing: once per forward, shared by every Engram layer

class Route:
    """The n-gram route of a batch of windows: exact keys per order and, when computed, each key's
    MPHF slot in its order's hot tier (-1 = cold). is_hot = hot in *any* order (the label every model's stratified metrics use)."""

    def __init__(self, keys, slots=None):
        self.keys, self.slots = keys, slots
        self.is_hot_order = torch.stack([s >= 0 for s in slots.values()]) if slots is not None else None  # (O, B, T)
        self.is_hot = self.is_hot_order.any(0) if slots is not None else None                           # (B, T)


class NgramIndex(nn.Module):
    """token ids (with the tokens before the window) -> Route. Holds the canonical map, the hot tiers
    and, when a variant needs them, the training counts, as device buffers; they are data, not weights,
    so they are not saved in checkpoints (checkpoints record their checksums instead)."""

    def __init__(self, canonical, hot_index, orders, counts=None):
        """hot_index {order: (sorted hot keys, their MPHF slots)}; counts {order: (sorted distinct
        training keys, counts)} or None."""
        super().__init__()
        self.orders, self.max_order = tuple(orders), max(orders)
        self.register_buffer('canonical', torch.as_tensor(canonical, dtype=torch.long), persistent=False)
        for o in self.orders:
            keys, slots = hot_index[o]
            self.register_buffer(f'hot_keys_o{o}', keys.long(), persistent=False)
            self.register_buffer(f'hot_slots_o{o}', slots.long(), persistent=False)
        self.has_counts = counts is not None
        for o, (k, c) in (counts or {}).items():
            self.register_buffer(f'count_keys_o{o}', torch.as_tensor(k).long(), persistent=False)
            self.register_buffer(f'count_vals_o{o}', torch.as_tensor(c).long(), persistent=False)

    def hot_slots(self, keys, order):
        """MPHF slot of each key of one order in its hot tier, -1 for cold keys."""
        return hot_lookup(keys, getattr(self, f'hot_keys_o{order}'), getattr(self, f'hot_slots_o{order}'))

    def train_counts(self, keys, order):
        """Training count of each key of one order (0 for n-grams never seen in training)."""
        c = hot_lookup(keys, getattr(self, f'count_keys_o{order}'), getattr(self, f'count_vals_o{order}'))
        return c.clamp(min=0)

    @property
    def pad_token(self):
        return self.canonical.numel() - 1     # the token id used before the stream's first token

    def route(self, idx, prev=None, hot=True):
        """The route of windows idx (B, T) whose tokens before them are prev (B, >= max_order-1; None: the stream's
        start, padded)."""
        n_prev = self.max_order - 1
        if prev is None:
            prev = torch.full((idx.shape[0], n_prev), self.pad_token, dtype=idx.dtype, device=idx.device)
        return self(torch.cat([prev[:, prev.shape[1] - n_prev:], idx], 1), n_prev, hot=hot)

    def forward(self, tokens, n_prev, hot=True):
        """tokens (B, n_prev+T): the window with the n_prev tokens before it."""
        cids = self.canonical[tokens]
        keys = {o: ngram_keys(cids, o, n_prev) for o in self.orders}
        return Route(keys, {o: self.hot_slots(keys[o], o) for o in self.orders} if hot else None)

# -----------------------------------------------------------------------------
# Memory tables: Eq. 1, Algorithm 1, Eq. 2

class EngramMemory(nn.Module):
    """Engram's memory (memory='hash'): all tables of all orders and heads as one (rows, d) embedding.
    Per order n the rows are laid out as [hot: R*K rows][cold head 0: M rows]...[cold head K-1: M rows]
    (R = N_hot hot rows, NineMemory's; 0 here). A hot row of E_hot[n] (K*d wide) is K consecutive d-rows, so
    Hash and Nine reads are both a single gather of (orders*K) d-rows per position.
    `reads[layer]` = (use the hot tier?, table set) of each Engram layer: the paper's model reads the one
    shared set with its hot tier in every layer (extensions/variants.py changes this layout, not the read)."""
    hot_tier = False      # whether reads route by the data dir's hot tier (its keys then bind the model: data signature)

    def __init__(self, config):
        super().__init__()
        c = config
        self.orders, self.K, self.d = tuple(c.ngram_orders), c.engram_heads, c.engram_head_dim
        self.table_size, self.hash = c.table_size, c.engram_hash
        self.hot_rows = self.n_hot_rows(c) if self.hot_tier else 0
        self.n_sets = self.n_table_sets(c)
        hot_layers = set(self.hot_layers(c))
        self.reads = {l: (l in hot_layers, 0 if self.n_sets == 1 else i) for i, l in enumerate(c.engram_layers)}
        per_order = self.hot_rows * self.K + self.K * self.table_size
        self.rows_per_set = per_order * len(self.orders)
        self.table = nn.Embedding(self.n_sets * self.rows_per_set, self.d)
        base = torch.arange(len(self.orders)) * per_order
        self.register_buffer('hot_base', base, persistent=False)                              # (O,)
        self.register_buffer('cold_base', base[:, None] + self.hot_rows * self.K
                             + torch.arange(self.K) * self.table_size, persistent=False)     # (O, K)
        self.register_buffer('mult', hash_multipliers(c.engram_hash_seed, len(self.orders), self.K,
                                                      max(self.orders)), persistent=False)

    @staticmethod
    def n_hot_rows(config):
        return config.hot_size

    @staticmethod
    def n_table_sets(config):
        """One set of tables, shared by every Engram layer (the paper's)."""
        return 1

    @staticmethod
    def hot_layers(config):
        """The Engram layers that read the hot tier: all."""
        return config.engram_layers

    @property
    def dim(self):
        return len(self.orders) * self.K * self.d

    def heads(self, keys, oi, order, size=None):
        """phi_{n,k}(g) for all heads k of one order (Eq. 1): (...,) keys -> (..., K) indices in [0, size or M)."""
        return HASHES[self.hash](keys, order, self.mult[oi], size or self.table_size)

    def hot_row(self, keys, slots, oi, order):
        """Row of E_hot[n] of each hot key: its MPHF slot (collision-free). (..., 1)"""
        return slots.clamp(min=0).unsqueeze(-1)

    def order_rows(self, keys, slots, oi, order, use_hot=True):
        """Algorithm 1 for one order: the d-rows its K heads read, (..., K)."""
        cold = self.cold_base[oi] + self.heads(keys, oi, order)                    # cold tier: Eq. 1
        if not (self.hot_tier and use_hot):
            return cold
        hot = self.hot_base[oi] + self.hot_row(keys, slots, oi, order) * self.K + torch.arange(self.K, device=keys.device)
        return torch.where(slots.unsqueeze(-1) >= 0, hot, cold)                    # Alg. 1: hot if g is in the tier

    def rows(self, route, use_hot=True):
        """Row of every (order, head) read at each position: (B, T, O*K)."""
        return torch.cat([self.order_rows(route.keys[o], route.slots[o] if route.slots is not None else None, oi, o, use_hot)
                          for oi, o in enumerate(self.orders)], dim=-1)

    def hot_row_ids(self):
        """Every row of the hot tier (all table sets, all orders), ascending: none for Hash."""
        hot = torch.arange(self.hot_rows * self.K)
        return torch.cat([s * self.rows_per_set + int(b) + hot for s in range(self.n_sets) for b in self.hot_base.cpu()])

    def table_rows(self, rows, table_set=0):
        """Rows of one table set as rows of the one table parameter."""
        return rows + table_set * self.rows_per_set

    def forward(self, rows, table_set=0):
        """e_t = concat over orders and heads (Eq. 2): (B, T, O*K*d)."""
        return self.table(self.table_rows(rows, table_set)).flatten(-2)


class NineMemory(EngramMemory):
    """Engram-Nine (memory='nine', Algorithm 1): Hash's cold tier plus a collision-free hot tier of N_hot rows
    per order, read at the MPHF slot of a hot n-gram."""
    hot_tier = True


# the memory kinds a config chooses by `memory` (None: the baseline, no memory); a new kind is one class and one line
MEMORY = {'none': None, 'hash': EngramMemory, 'nine': NineMemory}

def has_memory(memory):
    return MEMORY.get(memory) is not None

def has_hot_tier(memory):
    """Whether a model of this kind routes by the data dir's hot tier (so that tier must be the one it trained on)."""
    return has_memory(memory) and MEMORY[memory].hot_tier

# -----------------------------------------------------------------------------
# The gate: Eq. 3-5

class EngramGate(nn.Module):
    """One Engram layer's read-out: own W_K, W_V and norms over the shared memory vector e."""

    def __init__(self, config, d_mem):
        super().__init__()
        self.w_k = nn.Linear(d_mem, config.n_embd, bias=False)
        self.w_v = nn.Linear(d_mem, config.n_embd, bias=False)
        self.norm_h = nn.RMSNorm(config.n_embd, eps=1e-6)
        self.norm_k = nn.RMSNorm(config.n_embd, eps=1e-6)
        self.scale = 1 / math.sqrt(config.n_embd)

    def forward(self, h, e, fwd):
        k, v = self.key(e, fwd), self.w_v(e)                                     # Eq. 3
        alpha = self.activation(self.logit(h, k, fwd))                           # Eq. 4
        return alpha.unsqueeze(-1) * v, alpha                                    # Eq. 5

    def key(self, e, fwd):
        return self.w_k(e)

    def logit(self, h, k, fwd):
        # k comes out of a Linear (bf16 under autocast), h is the fp32 residual stream: both norms run in
        # fp32 with their fp32 gains, as autocast runs layer_norm (a bf16 input would miss the fused kernel)
        return (self.norm_h(h.float()) * self.norm_k(k.float())).sum(-1) * self.scale

    def activation(self, s):
        return torch.sigmoid(s)


# -----------------------------------------------------------------------------
# the combinations of the Engram core's options (GPTConfig, model.py) it refuses

def check_engram(c):
    if not has_memory(c['memory']):
        return
    if not c['engram_layers']:
        raise ConfigError(f"memory={c['memory']!r} with --engram_layers=() reads no memory; name the Engram blocks")
    if len(set(c['engram_layers'])) != len(c['engram_layers']):
        raise ConfigError(f"engram_layers {list(c['engram_layers'])} names a block twice; each Engram block once")
    bad = [l for l in c['engram_layers'] if not 0 <= l < c['n_layer']]
    if bad:
        raise ConfigError(f"engram_layers {list(c['engram_layers'])} has {bad} outside the model's blocks 0..{c['n_layer'] - 1}")
    # an upper bound of the table's rows (every layer its own table, Nine's hot slots too), counted in Python ints:
    # row indices are int64 tensors, and no machine holds 2^48 rows
    rows = c['engram_heads'] * (c['table_size'] + 2 * c['hot_size']) * len(c['ngram_orders']) * len(c['engram_layers'])
    if rows * c['engram_head_dim'] >= 2**48:
        raise ConfigError(f"--table_size {c['table_size']:,} (with --hot_size {c['hot_size']:,}, {c['engram_heads']} heads of "
                          f"{c['engram_head_dim']}) makes tables of up to {rows:,} rows, beyond any memory; the paper's is 400,000")
