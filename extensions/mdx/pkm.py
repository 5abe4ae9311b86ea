"""
Product-key memory (issue 17, part 3; Lample et al. 2019), with MD-mix-seeded sub-keys: a memory read by
the hidden state, as a baseline beside Engram's n-gram memory at equal table parameters.

FFN kind 'pkm': in the blocks of `pkm_layers` the FFN's output is MLP(x) + PKM(x); elsewhere the MLP alone.
PKM(x): a query q = W_q x split in two halves; each half scores its n sub-keys, keeps its top k; of the k^2
pairs (i, j), i.e. memory slots i * n + j with score s1_i + s2_j, the top k are read from a value table of
n^2 rows x n_embd, weighted by the softmax of their scores. Sub-keys:
  seeded   fixed Rademacher codes (+-1 / sqrt(d)) from MD-mix hashes of (half, sub-key, dim): no key
           parameters, identical on any device (the notes' "seeded codes")
  learned  sub-key parameters, as in the paper
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import mdmix
from configurator import ConfigError
from layers import MLP
from engramlib.options import Group, Option


class ProductKeyMemory(nn.Module):

    def __init__(self, config, layer_idx=0):
        super().__init__()
        n, d, C = config.pkm.pkm_subkeys, config.pkm.pkm_key_dim, config.n_embd
        self.n, self.k = n, config.pkm.pkm_topk
        self.query = nn.Linear(C, 2 * d, bias=False)
        self.values = nn.Embedding(n * n, C)
        codes = seeded_codes(n, d, layer_idx)
        if config.pkm.pkm_keys == 'learned':
            self.subkeys = nn.Parameter(codes)                # (2, n, d), trained from the same start
        else:
            self.register_buffer('subkeys', codes, persistent=False)

    def forward(self, x):
        q = self.query(x).unflatten(-1, (2, -1))                           # (B, T, 2, d)
        scores = torch.einsum('btgd,gnd->btgn', q, self.subkeys.to(q.dtype))
        s, i = scores.topk(self.k, dim=-1)                                 # (B, T, 2, k) per half
        pair = (s[..., 0, :, None] + s[..., 1, None, :]).flatten(-2)       # (B, T, k*k)
        slot = (i[..., 0, :, None] * self.n + i[..., 1, None, :]).flatten(-2)
        best, j = pair.topk(self.k, dim=-1)
        w = F.softmax(best.float(), dim=-1).to(x.dtype)
        return (self.values(slot.gather(-1, j)) * w.unsqueeze(-1)).sum(-2)


class MLPWithPKM(nn.Module):
    """GPT-2's MLP, plus a product-key memory in the blocks of pkm_layers."""

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.mlp = MLP(config, layer_idx)
        self.pkm = ProductKeyMemory(config, layer_idx) if layer_idx in config.pkm.pkm_layers else None

    def forward(self, x, fwd):
        y = self.mlp(x, fwd)
        return y + self.pkm(x) if self.pkm is not None else y


def seeded_codes(n, d, layer):
    """(2, n, d) sub-keys: +-1 / sqrt(d) from one MD-mix hash bit of (layer, half, sub-key, dim)."""
    cells = torch.arange(2 * n * d, dtype=torch.long)
    bits = mdmix.mdmix_hash(cells, torch.tensor([0x9B3C0 + layer], dtype=torch.long), 2)[:, 0]
    return ((2 * bits - 1).float() / math.sqrt(d)).view(2, n, d)


def check_pkm(c):
    if c['ffn'] != 'pkm':
        return
    if not 0 < c['pkm_topk'] <= c['pkm_subkeys']:
        raise ConfigError("pkm_topk must be in 1..pkm_subkeys")
    bad = [l for l in c['pkm_layers'] if not 0 <= l < c['n_layer']]
    if bad:
        raise ConfigError(f"pkm_layers {list(c['pkm_layers'])} has {bad} outside the model's blocks 0..{c['n_layer'] - 1}")

OPTIONS = Group("product-key memory (ffn='pkm')", dict(
    pkm_layers=Option((2, 4, 6), 'pkm: blocks whose FFN adds a product-key memory'),
    pkm_keys=Option('seeded', "pkm: 'seeded' (fixed MD-mix Rademacher codes) | 'learned' sub-keys", choices=('seeded', 'learned')),
    pkm_subkeys=Option(256, 'pkm: sub-keys per half (n^2 value rows per layer)', above=0),
    pkm_key_dim=Option(32, 'pkm: query dims per half', above=0),
    pkm_topk=Option(8, 'pkm: top-k per half and slots read', above=0),
), part='pkm', check=check_pkm)
