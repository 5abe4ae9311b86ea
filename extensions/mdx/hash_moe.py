"""
A hash-routed mixture-of-experts FFN (issue 17, part 2; MD-mix notes §2 "SABR"), beside a learned router.

E experts, each GPT-2's MLP (C -> 4C -> C), so a token's active parameters equal the dense MLP's and the
total is E times. Routers (moe_router):
  hash      expert = MD-mix hash of the token id with a salt per layer (Roller et al. 2021, Hash Layers:
            fixed random routing by token id, no router parameters); with moe_choices = c > 1, the token
            has c hashed candidates and takes the one with the highest load bias (the least loaded)
  balanced  a frequency-balanced token -> expert assignment from the data dir's unigram counts (greedy,
            most frequent token first onto the least-loaded expert: token frequencies are Zipfian, so plain
            hashing leaves some experts with far more tokens)
  switch    learned top-1 softmax router, its probability scaling the expert output (Switch Transformer)
Load bias (DeepSeek-V3's loss-free balancing): a per-expert bias, not trained, added to the routing
scores only for the choice (switch, or hash with c > 1); after each training forward it moves by
moe_bias_rate toward balance: b_e += rate * sign(mean load - load_e), so overloaded experts are chosen less.
Dispatch is vectorized with a fixed capacity per expert, ceil(moe_capacity * tokens / E) (static shapes:
one compiled graph): tokens past an expert's capacity get no FFN output this layer (the residual carries
them), as in Switch. `load` and `dropped` (buffers) hold the last forward's per-expert token counts and
dropped share. Caveats: under DDP each process moves its load bias by its own batch's loads (buffers are
not synchronized; the checkpoint keeps rank 0's); GPT.estimate_mfu counts every expert's weights, so it
overstates a MoE model's FLOPs per token E-fold for the FFN.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mdmix
from engramlib.data import load_counts
from engram import ID_BITS
from model import Extension
from engramlib.options import Group, Option


class MoE(nn.Module):

    def __init__(self, config, layer_idx=0):
        super().__init__()
        E, C, H = config.moe.moe_experts, config.n_embd, 4 * config.n_embd
        self.E, self.capacity, self.router_kind = E, config.moe.moe_capacity, config.moe.moe_router
        self.bias_rate, self.layer_idx = config.moe.moe_bias_rate, layer_idx
        self.w_fc = nn.Parameter(torch.randn(E, C, H) * 0.02)
        self.w_proj = nn.Parameter(torch.randn(E, H, C) * 0.02 / math.sqrt(2 * config.n_layer))   # GPT-2's scaled c_proj init
        self.b_fc = nn.Parameter(torch.zeros(E * H))      # biases kept 1-D: AdamW's no-decay group, as GPT-2's
        self.b_proj = nn.Parameter(torch.zeros(E * C))
        self.router = nn.Linear(C, E, bias=False) if config.moe.moe_router == 'switch' else None
        c = config.moe.moe_choices if config.moe.moe_router == 'hash' else 1
        self.register_buffer('candidates', hashed_experts(config.vocab_size, E, layer_idx, c), persistent=False)  # (V, c)
        self.register_buffer('load_bias', torch.zeros(E))
        self.register_buffer('load', torch.zeros(E), persistent=False)
        self.register_buffer('dropped', torch.zeros(()), persistent=False)

    def post_init(self, model):
        """The balanced router's assignment needs the data's unigram counts (in the model's index)."""
        if self.router_kind == 'balanced':
            self.candidates = balanced_experts(model.index.unigram, self.E, self.layer_idx).to(self.candidates.device)[:, None]

    def route(self, x, fwd):
        """(N,) expert and (N,) output scale of every token."""
        if self.router is not None:
            probs = F.softmax(self.router(x).float(), -1)
            expert = (probs + self.load_bias).argmax(-1)
            return expert, probs.gather(-1, expert[:, None]).squeeze(-1)
        cand = self.candidates[fwd.idx.reshape(-1)]                             # (N, c)
        expert = cand.gather(-1, self.load_bias[cand].argmax(-1, keepdim=True)).squeeze(-1)
        return expert, None

    def forward(self, x, fwd):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        N, E = xf.shape[0], self.E
        expert, scale = self.route(xf, fwd)
        cap = math.ceil(self.capacity * N / E)
        onehot = F.one_hot(expert, E)
        pos = ((onehot.cumsum(0) - 1) * onehot).sum(-1)                       # place in its expert's queue
        keep = pos < cap
        slot = torch.where(keep, expert * cap + pos, E * cap)                  # E * cap: a discard row
        buf = xf.new_zeros(E * cap + 1, C).index_add(0, slot, xf)[:-1].view(E, cap, C)
        h = F.gelu(torch.bmm(buf, self.w_fc) + self.b_fc.view(E, 1, -1))       # every expert's MLP at once
        y = torch.bmm(h, self.w_proj) + self.b_proj.view(E, 1, -1)
        y = torch.cat([y.reshape(E * cap, C), y.new_zeros(1, C)])[slot] * keep[:, None]
        if scale is not None:
            y = y * scale[:, None]
        self.track_load(onehot, keep)
        return y.view(B, T, C)

    @torch.no_grad()
    def track_load(self, onehot, keep):
        load = onehot.sum(0).float()
        self.load.copy_(load)
        self.dropped.copy_(1 - keep.float().mean())
        if self.training and self.bias_rate and (self.router is not None or self.candidates.shape[1] > 1):
            self.load_bias.add_(self.bias_rate * torch.sign(load.mean() - load))


def hashed_experts(vocab, E, layer, choices):
    """(V, choices) experts of every token id: MD-mix hashes with salts per layer and choice."""
    salts = torch.tensor([0x5AB70000 + 1009 * layer + 7 * j for j in range(choices)], dtype=torch.long)
    return mdmix.mdmix_hash(torch.arange(vocab, dtype=torch.long), salts, E)

def balanced_experts(unigram, E, layer):
    """(V,) expert of every token id: the most frequent first, each onto the expert with the least total
    count so far (greedy LPT); unseen tokens by hash. The grouping is computed once per model (every
    layer's is the same); each layer permutes the expert labels by its own hash."""
    key = (id(unigram), E)
    if key not in _LPT:
        counts = unigram.double().cpu()
        expert = hashed_experts(len(counts), E, 0, 1)[:, 0].clone()
        seen = torch.nonzero(counts > 0).flatten()
        order = seen[torch.argsort(counts[seen], descending=True, stable=True)]
        load, chosen = [0.0] * E, []
        for c in counts[order].tolist():
            e = min(range(E), key=load.__getitem__)
            chosen.append(e)
            load[e] += c
        expert[order] = torch.tensor(chosen, dtype=torch.long)
        _LPT.clear()
        _LPT[key] = (unigram, expert)          # holds the tensor, so its id is not reused while cached
    perm = torch.argsort(hashed_experts(E, 1 << 20, layer, 1)[:, 0])
    return perm[_LPT[key][1]]

_LPT = {}

class UnigramCounts(Extension):
    """The balanced router's token frequencies: the data dir's train unigram counts, a buffer of the index
    (model.Extension.extend_index)."""

    def extend_index(self, index, config, data_dir, meta):
        if config.ffn == 'moe' and config.moe.moe_router == 'balanced':
            keys, cnt = load_counts(data_dir, meta, 3, 'rawgrams')
            unigram = np.bincount(keys & ((1 << ID_BITS) - 1), weights=cnt, minlength=config.vocab_size)[:config.vocab_size]
            index.register_buffer('unigram', torch.from_numpy(unigram).long(), persistent=False)

def load_stats(model):
    """Per MoE layer: max / mean tokens per expert and the dropped share, of the last forward."""
    return {f'L{i}': {'max_over_mean': float(b.mlp.load.max() / b.mlp.load.mean().clamp(min=1)),
                      'dropped': float(b.mlp.dropped)}
            for i, b in enumerate(model.transformer.h) if isinstance(b.mlp, MoE)}


OPTIONS = Group("mixture of experts (ffn='moe')", dict(
    moe_experts=Option(4, "moe: experts per layer, each GPT-2's MLP (active parameters = the dense MLP's)", above=0),
    moe_router=Option('hash', "moe: 'hash' (MD-mix of the token id) | 'balanced' (unigram-count balanced) | 'switch' (learned top-1)",
                      choices=('hash', 'balanced', 'switch')),
    moe_choices=Option(1, 'moe hash: hashed candidates per token; > 1 picks the one with the highest load bias (least loaded)', above=0),
    moe_capacity=Option(1.25, 'moe: tokens per expert at most, x tokens / experts (the rest skip this FFN)', above=0),
    moe_bias_rate=Option(0.0, 'moe: loss-free load balancing step of the routing bias (0 = off)', at_least=0),
), part='moe')
