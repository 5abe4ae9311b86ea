"""
Token embeddings beside GPT-2's tied one (issue 17, part 1; MD-mix notes §1 "MIHE").

GPT-2 ties the input embedding to the output head (the same V x C matrix), so an input embedding that
costs fewer parameters saves nothing while the head is tied: every kind here unties the head, and
GPT.param_counts reports the embedding apart from the head.

  untied   nn.Embedding(V, C) beside its own head: the plain reference at untied size
  lowrank  nn.Embedding(V, r) then Linear(r, C): a factorized embedding (ALBERT)
  mihe     multi-index hash embedding: token id -> one row in each of T tables of B rows (an MD-mix hash
           with a salt per table, or the Engram multiply-xor hash), the T sub-vectors of C/T concatenated.
           Two tokens share their whole vector only if they collide in all T tables: about C(V,2)/B^T pairs
           (Svenstrup et al. 2017, hash embeddings; the notes' sizing example).
The indices are integer functions of the token id, computed once at construction on the CPU, so they are
identical on any device.
"""
import math

import torch
import torch.nn as nn

import mdmix
from engram import hash_multipliers, multiply_xor_hash


def untied_embedding(config, lm_head):
    return nn.Embedding(config.vocab_size, config.n_embd)


class LowRankEmbedding(nn.Module):

    def __init__(self, config, lm_head=None):
        super().__init__()
        self.codes = nn.Embedding(config.vocab_size, config.embed_rank)
        self.up = nn.Linear(config.embed_rank, config.n_embd, bias=False)

    def forward(self, idx):
        return self.up(self.codes(idx))


class HashEmbedding(nn.Module):
    """MIHE: T tables of B rows of C/T; token t reads row h_j(t) of table j (Eq. in the module doc)."""

    def __init__(self, config, lm_head=None):
        super().__init__()
        T, B, C = config.embed_tables, config.embed_buckets, config.n_embd
        assert C % T == 0, f"n_embd {C} must be divisible by embed_tables {T}"
        self.T, self.B = T, B
        self.table = nn.Embedding(T * B, C // T)
        rows = token_rows(config.vocab_size, T, B, config.embed_hash, config.embed_hash_seed)
        self.register_buffer('rows', rows + torch.arange(T) * B, persistent=False)   # (V, T) into the stacked tables

    def forward(self, idx):
        return self.table(self.rows[idx]).flatten(-2)


def token_rows(vocab, T, B, kind='mdmix', seed=0):
    """(V, T) row of every token id in each table: mdmix_hash with T salts, or multiply-xor with T multipliers."""
    ids = torch.arange(vocab, dtype=torch.long)
    if kind == 'mdmix':
        salts = torch.tensor([0x3E3B0 + 7919 * j + (seed << 20) for j in range(T)], dtype=torch.long)
        return mdmix.mdmix_hash(ids, salts, B)
    return multiply_xor_hash(ids, 1, hash_multipliers(seed, 1, T, 1)[0], B)


def full_collisions(rows, B):
    """Pairs of token ids whose rows (token_rows: (V, T) in [0, B)) agree in every table, so they share
    their whole embedding, and the expectation C(V, 2) / B^T under uniform hashing."""
    V, T = rows.shape
    _, counts = torch.unique(rows, dim=0, return_counts=True)
    pairs = int((counts * (counts - 1) // 2).sum())
    return pairs, math.comb(V, 2) / B ** T
