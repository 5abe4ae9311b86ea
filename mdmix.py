"""
MD-mix: MD5's own operations (RFC 1321) as vectorized tensor code, and two things built from them:
  - an MD-mix hash family for Engram heads (`engram_hash='mdmix'`): one 64-bit n-gram key -> K indices;
  - deterministic noise xi = f(token id, position, layer, step, stream) for regularization.

32-bit words live in int64 tensors holding values in [0, 2^32) (torch has no full uint32 arithmetic),
so every op masks back to 32 bits. The proof that the primitives are MD5's: md5() built only from
them equals hashlib.md5 (tests/test_mdmix.py).
"""
import math

import numpy as np
import torch

import engram
from configurator import ConfigError
from engramlib.options import Group, Option
from model import Extension

M32 = 0xFFFFFFFF

# -----------------------------------------------------------------------------
# primitives (RFC 1321 §3.4)

def add32(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out & M32

def rotl(x, s):
    return ((x << s) | (x >> (32 - s))) & M32

def F(x, y, z):
    return (x & y) | (~x & M32 & z)

def G(x, y, z):
    return (x & z) | (y & ~z & M32)

def H(x, y, z):
    return x ^ y ^ z

def I(x, y, z):
    return y ^ (x | (~z & M32))

ROUND_FUNCS = (F, G, H, I)
T = [int(abs(math.sin(i + 1)) * 2**32) & M32 for i in range(64)]      # T[i] = floor(2^32 |sin(i+1)|)
SHIFTS = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4
MSG_INDEX = ([i for i in range(16)] + [(5 * i + 1) % 16 for i in range(16)] +
             [(3 * i + 5) % 16 for i in range(16)] + [(7 * i) % 16 for i in range(16)])
IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)

def md5_step(a, b, c, d, i, m):
    """One of MD5's 64 steps: a <- b + ROTL(a + f(b,c,d) + M[k] + T[i], s)."""
    return add32(b, rotl(add32(a, ROUND_FUNCS[i // 16](b, c, d), m, T[i]), SHIFTS[i]))

def md5_compress(state, block):
    """state: 4 tensors (B,); block: (B, 16) message words. Returns the new state."""
    a, b, c, d = state
    for i in range(64):
        a, b, c, d = d, md5_step(a, b, c, d, i, block[:, MSG_INDEX[i]]), b, c
    return tuple(add32(x, y) for x, y in zip(state, (a, b, c, d)))

def md5(messages, device='cpu'):
    """Batched MD5 of a list of byte strings, from the primitives above; returns 16-byte digests."""
    padded = []
    for m in messages:   # RFC 1321 §3.1-3.2: 0x80, zeros to 56 mod 64, bit length little-endian
        p = m + b'\x80' + b'\x00' * ((55 - len(m)) % 64) + (8 * len(m) % 2**64).to_bytes(8, 'little')
        padded.append(np.frombuffer(p, dtype='<u4').astype(np.int64))
    nblocks = torch.tensor([len(p) // 16 for p in padded], device=device)
    words = torch.zeros(len(padded), int(nblocks.max()), 16, dtype=torch.long, device=device)
    for i, p in enumerate(padded):
        words[i, :len(p) // 16] = torch.from_numpy(p.reshape(-1, 16))
    state = tuple(torch.full((len(padded),), v, dtype=torch.long, device=device) for v in IV)
    for j in range(words.shape[1]):          # all messages at once; shorter ones stop updating
        new = md5_compress(state, words[:, j])
        live = j < nblocks
        state = tuple(torch.where(live, n, s) for n, s in zip(new, state))
    digest = torch.stack(state, 1).cpu().numpy().astype('<u4')
    return [row.tobytes() for row in digest]

# -----------------------------------------------------------------------------
# MD-mix: a few MD steps over a 128-bit state seeded by the input, no chaining

def mdmix(x, y, salt, steps=8):
    """Mix two 32-bit input words with a 64-bit salt (int64 tensor or int) through `steps` MD steps
    (F, G, H, I in turn, RFC rotations, constants T[i] xor salt). Returns the 4-word state.
    8 steps give full avalanche (tests measure ~50% output bits per flipped input bit)."""
    salt = torch.as_tensor(salt, dtype=torch.long, device=x.device)
    s_lo, s_hi = salt & M32, (salt >> 32) & M32
    a, b, c, d = (torch.full_like(x, v) for v in IV)
    a, c = a ^ s_lo, c ^ s_hi
    msg = (x, y, x ^ s_hi, y ^ s_lo)
    for i in range(steps):
        r = (i * 16 + i % 4) % 64        # one step of each round in turn, with its own shift/constant
        a, b, c, d = d, md5_step(a, b, c, d, r, msg[i % 4]), b, c
    return a, b, c, d

def mdmix_hash(keys, salts, size, steps=8):
    """keys (...,) int64 n-gram keys, salts (K,) int64 (one per head) -> (..., K) indices in [0, size)."""
    k = keys.unsqueeze(-1)
    a, b, c, d = mdmix(k & M32, (k >> 32) & M32, salts, steps)
    h = ((a ^ c) << 31) ^ (b ^ d)                 # 63-bit value from all four words
    return (h & ((1 << 63) - 1)) % size


# -----------------------------------------------------------------------------
# deterministic noise

STREAMS = {'emb': 1, 'q': 2, 'k': 3, 'logits': 4, 'mem': 5}

def noise_words(token, position, layer, step, stream, n_features, seed=0):
    """Two 32-bit words per (position, feature): (..., n_features) each. token/position: (...,) tensors;
    step: an int or a 0-d tensor (training passes a tensor, so a compiled model is not recompiled per step)."""
    tag = ((seed & 0x7FFF) << 48) | ((layer & 0xFFFF) << 32) | ((STREAMS[stream] & 0xFF) << 24) | (step & 0xFFFFFF)
    a, b, c, d = mdmix(token.long() & M32, position.long() & M32, tag, steps=8)
    # second MD-mix per feature, seeded by the position's state (fewer steps leave features correlated)
    f = torch.arange(n_features, device=token.device)
    a, b, c, d = mdmix(a.unsqueeze(-1) ^ f, b.unsqueeze(-1), ((c << 32) | d).unsqueeze(-1), steps=8)
    return a ^ c, b ^ d

def gaussian(w1, w2):
    """Box-Muller from two 32-bit words, in float64, rounded to float32: zero mean, unit variance."""
    u1 = (w1.double() + 0.5) / 2**32               # (0, 1): log is finite
    u2 = w2.double() / 2**32
    return (torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).float()

def rademacher(w1):
    return ((w1 & 1) * 2 - 1).float()

def schedule(step, max_iters, kind, tail_frac):
    """Noise multiplier: 'constant', or 'cosine_tail' = 1 until the last tail_frac of training,
    then cosine to zero at max_iters. Tensor ops, no branch on the step (compiled code stays one graph)."""
    if kind == 'constant':
        return 1.0
    start = (1 - tail_frac) * max_iters
    p = ((torch.as_tensor(step, dtype=torch.float64) - start) / max(1e-9, max_iters - start)).clamp(0, 1)
    return 0.5 * (1 + torch.cos(math.pi * p))


class Noise:
    """The model's MD-mix noise knobs. bind(idx, step) gives the callable the forward uses."""

    def __init__(self, sigmas, kind='gaussian', schedule='constant', tail_frac=0.2, max_iters=1, mem_scope='all', seed=0):
        assert kind in ('gaussian', 'rademacher'), f"noise_kind must be 'gaussian' or 'rademacher', got {kind!r}"
        assert schedule in ('constant', 'cosine_tail'), f"noise_schedule must be 'constant' or 'cosine_tail'"
        assert mem_scope in ('all', 'hot', 'cold'), f"noise_mem_scope must be 'all', 'hot' or 'cold'"
        self.sigmas, self.kind, self.sched, self.tail_frac = sigmas, kind, schedule, tail_frac
        self.max_iters, self.mem_scope, self.seed = max_iters, mem_scope, seed

    @classmethod
    def from_config(cls, cfg):
        sig = {'emb': cfg['noise_emb'], 'q': cfg['noise_qk'], 'k': cfg['noise_qk'],
               'logits': cfg['noise_logits'], 'mem': cfg['noise_mem']}
        return cls(sig, cfg['noise_kind'], cfg['noise_schedule'], cfg['noise_tail_frac'], cfg['max_iters'],
                   cfg['noise_mem_scope'], cfg['noise_seed'])

    @property
    def needs_hot(self):
        return self.sigmas.get('mem', 0) > 0 and self.mem_scope != 'all'

    def bind(self, idx, step):
        return BoundNoise(self, idx, step, schedule(step, self.max_iters, self.sched, self.tail_frac))

    def xi(self, idx, step, stream, n_features, layer=0):
        B, T = idx.shape
        return self.draw(idx, torch.arange(T, device=idx.device).expand(B, T), step, stream, n_features, layer)

    def draw(self, tokens, positions, step, stream, n_features, layer=0):
        """The noise of each (token, position): (..., n_features), a pure function of them (any slice of a batch
        draws its rows' own values)."""
        w1, w2 = noise_words(tokens, positions, layer, step, stream, n_features, self.seed)
        return gaussian(w1, w2) if self.kind == 'gaussian' else rademacher(w1)


class BoundNoise:
    """Noise for one forward pass (fixed tokens and step)."""

    def __init__(self, noise, idx, step, scale):
        self.noise, self.idx, self.step, self.scale = noise, idx, step, scale

    def __call__(self, stream, x, layer=0):
        """x (B, T, C) + sigma * xi; unchanged (the same tensor) when the stream's sigma is 0."""
        sigma = self.noise.sigmas.get(stream, 0)
        if sigma == 0:
            return x
        return x + sigma * self.scale * self.noise.xi(self.idx, self.step, stream, x.shape[-1], layer).to(x.dtype)

    def rows(self, stream, x, start, layer=0):
        """__call__ on rows start.. of the flattened (B*T, C) batch: each row's own noise (the chunked loss's logits)."""
        sigma = self.noise.sigmas.get(stream, 0)
        if sigma == 0:
            return x
        rows = torch.arange(start, start + x.shape[0], device=x.device)
        xi = self.noise.draw(self.idx.reshape(-1)[rows], rows % self.idx.shape[1], self.step, stream, x.shape[-1], layer)
        return x + sigma * self.scale * xi.to(x.dtype)

    def memory(self, e, is_hot_order, layer=0):
        """Noise on the memory vector read from the tables: all rows, or only hot/cold ones (per order).
        is_hot_order (O, B, T), or None for mem_scope 'all'."""
        sigma = self.noise.sigmas.get('mem', 0)
        if sigma == 0:
            return e
        xi = self.noise.xi(self.idx, self.step, 'mem', e.shape[-1], layer).to(e.dtype)
        if self.noise.mem_scope != 'all':
            hot = is_hot_order.permute(1, 2, 0)                                         # (B, T, O)
            mask = hot if self.noise.mem_scope == 'hot' else ~hot
            xi = (xi.view(*mask.shape, -1) * mask.unsqueeze(-1)).view_as(e)
        return e + sigma * self.scale * xi




# -----------------------------------------------------------------------------
# the noise's options: every sigma 0 = off, bit-identical to no noise

SIGMAS = ('noise_emb', 'noise_qk', 'noise_logits', 'noise_mem')

class NoiseHooks(Extension):
    """The noise's hook into a run (model.Extension): a Noise when any sigma is on, else none (the paper's forward)."""

    def noise(self, cfg):
        return Noise.from_config(cfg) if any(cfg[k] > 0 for k in ('noise_emb', 'noise_qk', 'noise_logits', 'noise_mem')) else None


def check_noise(c):
    if not engram.has_memory(c['memory']) and c['noise_mem']:
        raise ConfigError("memory='none' has no Engram memory, but --noise_mem act on it; set --memory='hash' or 'nine', or drop them")
    if c['noise_mem_scope'] != 'all' and not engram.has_hot_tier(c['memory']) and c['noise_mem']:
        raise ConfigError(f"--noise_mem_scope={c['noise_mem_scope']!r} needs Nine's hot/cold rows (--memory='nine')")

NOISE = Group('MD-mix deterministic noise (mdmix.py); every sigma 0 = off, bit-identical to no noise', dict(
    noise_emb=Option(0.0, 'sigma of the noise on token embeddings', at_least=0),
    noise_qk=Option(0.0, 'sigma of the noise on attention queries and keys', at_least=0),
    noise_logits=Option(0.0, 'sigma of the noise on the output logits', at_least=0),
    noise_mem=Option(0.0, 'sigma of the noise on the Engram memory vector (rows in noise_mem_scope)', at_least=0),
    noise_mem_scope=Option('all', "'all' | 'hot' | 'cold' rows of Engram memory", choices=('all', 'hot', 'cold')),
    noise_kind=Option('gaussian', "'gaussian' | 'rademacher'", choices=('gaussian', 'rademacher')),
    noise_schedule=Option('constant', "'constant' | 'cosine_tail' (cosine to zero over the last noise_tail_frac)",
                          choices=('constant', 'cosine_tail')),
    noise_tail_frac=Option(0.2, "the final fraction of training for 'cosine_tail'", at_least=0, below=1),
    noise_seed=Option(0, 'seed of the noise hash', at_least=0),
), check=check_noise)
