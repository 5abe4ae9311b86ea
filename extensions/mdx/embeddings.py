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
import torch.nn.functional as F

import mdmix
from engram import hash_multipliers, multiply_xor_hash
from configurator import ConfigError
from engramlib.options import Group, Option


def untied_embedding(config, lm_head):
    return nn.Embedding(config.vocab_size, config.n_embd)


class LowRankEmbedding(nn.Module):

    def __init__(self, config, lm_head=None):
        super().__init__()
        self.codes = nn.Embedding(config.vocab_size, config.embed.embed_rank)
        self.up = nn.Linear(config.embed.embed_rank, config.n_embd, bias=False)

    def forward(self, idx):
        return self.up(self.codes(idx))


class HashEmbedding(nn.Module):
    """MIHE: T tables of B rows of C/T; token t reads row h_j(t) of table j (see the module doc).
    embed_seed_choices = S > 1 (issue 17, part 4, the notes' "differentiable seeding"): each table has S
    candidate hash seeds and a learned logit per seed; the forward uses the argmax seed (hard), the backward
    the softmax (straight-through), so the logits learn which seed the loss prefers."""

    def __init__(self, config, lm_head=None):
        super().__init__()
        e = config.embed
        T, B, C, S = e.embed_tables, e.embed_buckets, config.n_embd, e.embed_seed_choices
        self.T, self.B, self.S = T, B, S
        self.table = nn.Embedding(T * B, C // T)
        rows = torch.stack([token_rows(config.vocab_size, T, B, e.embed_hash, e.embed_hash_seed + s)
                            for s in range(S)], -1)                                  # (V, T, S)
        self.register_buffer('rows', rows + (torch.arange(T) * B)[:, None], persistent=False)   # into the stacked tables
        self.seed_logits = nn.Parameter(torch.zeros(T * S)) if S > 1 else None    # 1-D: no weight decay
        self.override = None                  # (T, S) weights to use instead (seed_gradient_check)

    def seed_weights(self):
        """(T, S): one-hot of each table's argmax seed in value, the softmax's gradient in backward."""
        p = torch.softmax(self.seed_logits.view(self.T, self.S), -1)
        hard = F.one_hot(p.argmax(-1), self.S).to(p.dtype)
        return hard + p - p.detach()

    def forward(self, idx):
        if self.seed_logits is None:
            return self.table(self.rows[idx][..., 0]).flatten(-2)
        w = self.seed_weights() if self.override is None else self.override
        return (self.table(self.rows[idx]) * w.unsqueeze(-1).to(self.table.weight.dtype)).sum(-2).flatten(-2)


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


def seed_gradient_check(model, x, y, prev):
    """Does the straight-through gradient predict what changing a seed does? For every table j and every
    seed s other than its current one c: the first-order estimate dL/dw_{j,s} - dL/dw_{j,c} of moving the
    table's weight from c to s, beside the real change L(seed s) - L(seed c) (finite difference, the same
    batch, eval mode). Returns the rows and the share of pairs whose signs agree."""
    emb = model.transformer.wte
    was = model.training
    model.eval()
    w = F.one_hot(emb.seed_weights().argmax(-1), emb.S).float().requires_grad_()
    loss = forward_with_seed_weights(model, x, y, prev, w)
    loss.backward()
    rows = []
    with torch.no_grad():
        for j in range(emb.T):
            c = int(w[j].argmax())
            for s in range(emb.S):
                if s != c:
                    w2 = w.detach().clone()
                    w2[j] = F.one_hot(torch.tensor(s), emb.S).float()
                    fd = float(forward_with_seed_weights(model, x, y, prev, w2) - loss)
                    rows.append({'table': j, 'from': c, 'to': s, 'estimate': float(w.grad[j, s] - w.grad[j, c]), 'change': fd})
    model.train(was)
    agree = sum((r['estimate'] > 0) == (r['change'] > 0) for r in rows) / max(1, len(rows))
    return rows, agree

def forward_with_seed_weights(model, x, y, prev, w):
    model.transformer.wte.override = w
    try:
        return model(x, y, prev=prev)[1]
    finally:
        model.transformer.wte.override = None


def check_embeddings(c):
    if c['embedding'] == 'mihe' and c['n_embd'] % c['embed_tables']:
        raise ConfigError(f"n_embd {c['n_embd']} must be divisible by embed_tables {c['embed_tables']}")

OPTIONS = Group("token embeddings (embedding='untied' | 'lowrank' | 'mihe')", dict(
    embed_rank=Option(64, 'lowrank: rank of the factorized embedding', above=0),
    embed_tables=Option(2, 'mihe: T hash tables (n_embd / T each)', above=0),
    embed_buckets=Option(8192, 'mihe: B rows per table', above=0),
    embed_hash=Option('mdmix', "mihe: 'mdmix' | 'mulxor'", choices=('mdmix', 'mulxor')),
    embed_hash_seed=Option(0, 'mihe: seed of the salts / multipliers', at_least=0),
    embed_seed_choices=Option(1, 'mihe: > 1 = learned seeds: that many candidate seeds per table, straight-through logits', above=0),
), part='embed', check=check_embeddings)
