"""
The GPT-2 backbone's parts (nanoGPT), on the floor below model.py and extensions/mdx/: attention, MLP, the pre-norm
block, the KV cache and the ForwardPass they share, with the backbone's options and the registries of
part kinds. extensions/__init__.py registers the other kinds (extensions/mdx/) there, with their options.
"""
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from configurator import ConfigError

# which kernel scaled_dot_product_attention may use; 'auto': PyTorch's choice per call (flash attention on CUDA)
SDPA_BACKENDS = {'auto': None, 'flash': SDPBackend.FLASH_ATTENTION, 'cudnn': SDPBackend.CUDNN_ATTENTION,
                 'efficient': SDPBackend.EFFICIENT_ATTENTION, 'math': SDPBackend.MATH}

def sdpa_backend(name):
    """The context under which SDPA uses only `name`'s kernel. Entered inside the forward, so a compiled model
    traces it into its own graph: dynamo does not guard on the global SDPA flags, and a context around a compiled
    call is ignored once the graph exists (two models compiled in one process share a graph)."""
    return nullcontext() if SDPA_BACKENDS[name] is None else sdpa_kernel([SDPA_BACKENDS[name]])

class ForwardPass:
    """What the parts of one forward pass share: the token ids, the n-gram route (engram.Route), the
    bound MD-mix noise (the identity when off), the KV cache when sampling (None in training), the train
    step (an int or a 0-d tensor), the alphas of the Engram layers, and values computed once on first use
    and reused by every layer (memory rows and vectors, gate features)."""

    def __init__(self, model, idx, route, noise, kv=None, step=0):
        self.model, self.idx, self.route, self.noise, self.kv, self.step = model, idx, route, noise, kv, step
        self.alphas, self.computed = [], {}

    def once(self, key, fn):
        if key not in self.computed:
            self.computed[key] = fn()
        return self.computed[key]

    def rows(self, use_hot):
        """The table row of every (order, head) at each position (Algorithm 1), once per forward."""
        return self.once(('rows', use_hot), lambda: self.model.memory.rows(self.route, use_hot))


class NoNoise:
    """No MD-mix noise (the paper's model, and every eval): each injection point is the identity."""

    def __call__(self, stream, x, layer=0):
        return x

    def rows(self, stream, x, start, layer=0):
        return x

    def memory(self, e, is_hot_order, layer=0):
        return e

NO_NOISE = NoNoise()


class CausalSelfAttention(nn.Module):
    """GPT-2's attention; kernel: another way to attend (q, k, v, fwd) -> y, for the attention kinds of
    extensions/mdx/ (None: scaled_dot_product_attention, flash attention on CUDA)."""

    def __init__(self, config, layer_idx=0, kernel=None):
        super().__init__()
        self.layer_idx = layer_idx
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.kernel = kernel(config, layer_idx) if kernel is not None else self.sdpa

    def forward(self, x, fwd):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k = fwd.noise('q', q, self.layer_idx), fwd.noise('k', k, self.layer_idx)   # MD-mix (identity when off)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = self.kernel(q, k, v, fwd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def sdpa(self, q, k, v, fwd):
        if fwd.kv is not None:          # sampling: attend to the cached tokens too, and cache these
            k, v = fwd.kv.extend(self.layer_idx, k, v)
        # flash attention on CUDA (is_causal); with a cached prefix, the causal mask shifted by its length
        T, S = q.size(2), k.size(2)
        mask = None if S == T else torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=S == T,
                                              dropout_p=self.dropout if self.training else 0)


class MLP(nn.Module):

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, fwd):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm GPT-2 block; in Engram layers the gated memory enters the residual stream before
    attention (paper §3)."""

    def __init__(self, config, layer_idx, engram=None):
        super().__init__()
        self.layer_idx, self.engram = layer_idx, engram
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = ATTENTION[config.attention](config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FFN[config.ffn](config, layer_idx)

    def forward(self, x, fwd):
        if self.engram is not None:
            out, alpha = self.engram(x, fwd.memory[self.layer_idx], fwd)
            fwd.alphas.append(alpha)
            x = x + out
        x = x + self.attn(self.ln_1(x), fwd)
        x = x + self.mlp(self.ln_2(x), fwd)
        return x

    @staticmethod
    def stack(blocks, x, fwd):
        """How a block kind runs the whole stack: GPT.hidden's seam (extensions/mdx/reversible.py runs its blocks as one
        autograd Function)."""
        for block in blocks:
            x = block(x, fwd)
        return x


class KVCache:
    """Keys and values of every attention layer for the tokens seen so far, for sampling: a forward with
    a cache attends to them and appends its own; its positions continue from `pos`."""

    def __init__(self):
        self.k, self.v, self.pos = {}, {}, 0

    def extend(self, layer, k, v):
        if layer in self.k:
            k, v = torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2)
        self.k[layer], self.v[layer] = k, v
        return k, v


def tied_embedding(config, lm_head):
    """GPT-2's token embedding: the output head's weight, tied."""
    wte = nn.Embedding(config.vocab_size, config.n_embd)
    wte.weight = lm_head.weight
    return wte


# -----------------------------------------------------------------------------
# The kinds a config can choose (GPTConfig.embedding / attention / ffn / block): name -> constructor. Attention
# and FFN kinds are built as Kind(config, layer_idx) and called as part(x, fwd); extensions/__init__.py adds extensions/mdx/'s.
EMBEDDINGS = {'tied': tied_embedding}
ATTENTION = {'causal': CausalSelfAttention}
FFN = {'mlp': MLP}
BLOCKS = {'prenorm': Block}

def check_backbone(c):
    if c['n_embd'] % c['n_head']:
        raise ConfigError(f"n_embd {c['n_embd']} is not divisible by n_head {c['n_head']}")
