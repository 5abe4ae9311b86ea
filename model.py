"""
GPT-2 (nanoGPT) with optional Engram memory at `engram_layers` (paper §3: hashed tables or the MPHF hot tier, and the gate).
memory = 'none' (baseline) | 'hash' (multi-head hashed tables) | 'nine' (MPHF hot tier + hashed cold tier).
Block indices in engram_layers are 0-based, like the DeepSeek Engram demo's layer_ids.

This file, engram.py and layers.py are the paper's model and import nothing beyond it. GPTConfig below is the
paper's model; the parts of a block are chosen from it at construction, through the registries of layers.py and
engram.py. Everything else (the paper's open-question variants, MD-mix, extensions/mdx/) is an extension: extensions/__init__.py
registers its kinds and composes a config class with its options, whose Extensions act on the model through
the hooks of `Extension`, once, at construction.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from engram import HASHES, MEMORY, EngramGate, NgramIndex, check_engram, has_hot_tier, has_memory
from layers import ATTENTION, BLOCKS, EMBEDDINGS, FFN, NO_NOISE, ForwardPass, KVCache, check_backbone, sdpa_backend
from engramlib.linear_ce import chunked_cross_entropy
from engramlib.options import check_values, fields_group, option


@dataclass
class GPTConfig:
    """The paper's model (Tables 1/2): GPT-2 small with Engram memory. Every field's allowed values are checked
    by validate(); the default is the paper's."""
    # the data (train.py sets it from the data dir)
    vocab_size: int = option(50304, "the data's vocabulary padded up to a multiple of 64 (faster matmuls)", above=0)
    # the backbone (layers.py): GPT-2 small
    block_size: int = option(1024, 'tokens per window (the positions of the model)', above=0)
    n_layer: int = option(12, 'transformer blocks', above=0)
    n_head: int = option(12, 'attention heads', above=0)
    n_embd: int = option(768, 'model width', above=0)
    dropout: float = option(0.0, 'dropout in attention, MLP and embeddings', at_least=0, below=1)
    bias: bool = option(True, 'biases in Linear and LayerNorm (GPT-2)')
    embedding: str = option('tied', "token embedding: 'tied' to the head (GPT-2) | 'untied' | 'lowrank' | 'mihe' "
                            "(extensions/mdx/embeddings.py)", choices=EMBEDDINGS)
    attention: str = option('causal', "'causal' (GPT-2, SDPA) | 'lsh' (MD-banded LSH, extensions/mdx/attention_lsh.py) | 'sketch' / "
                            "'bucket' (extensions/mdx/attention_sketch.py)", choices=ATTENTION)
    ffn: str = option('mlp', "the blocks' FFN: 'mlp' (GPT-2) | 'moe' (mixture of experts, extensions/mdx/hash_moe.py) | 'pkm' "
                      "(+ product keys, extensions/mdx/pkm.py)", choices=FFN)
    block: str = option('prenorm', "'prenorm' (GPT-2) | 'reversible' (coupling blocks, activations recomputed in "
                        "backward: extensions/mdx/reversible.py)", choices=BLOCKS)
    # Engram memory (engram.py; paper §3, Tables 1/2)
    memory: str = option('nine', "'none' (baseline) | 'hash' (multi-head hashed tables) | 'nine' (MPHF hot tier + hashed "
                         "cold tier)", choices=MEMORY)
    engram_layers: tuple = option((2, 4, 6), '0-based blocks with Engram memory (their tables are shared)')
    ngram_orders: tuple = option((2, 3), 'n-gram orders of the memory')
    engram_heads: int = option(2, 'K hashed heads per order', above=0)
    engram_head_dim: int = option(64, 'd per head: memory vector = orders x K x d', above=0)
    table_size: int = option(400_000, 'slots per hashed head (Hash) / per cold head (Nine)', above=0)
    hot_size: int = option(100_000, "N_hot: Nine's hot n-grams per order; every model's is_hot label", above=0)
    engram_hash: str = option('mulxor', "hash family of the heads: 'mulxor' (multiply-xor + fmix64) | 'mdmix' (MD5 steps)",
                              choices=HASHES)
    engram_hash_seed: int = option(0, 'seed of the hash multipliers / salts (the same for every seed: see '
                                   'hash_seed_from_seed)', at_least=0)
    # the training loss
    label_smoothing: float = option(0.0, 'cross-entropy label smoothing in training (MD-mix ablation)', at_least=0, below=1)

    groups = ()         # not fields: the option groups validate() checks (below), and the extensions a
    extensions = ()     # composed config carries (extensions/__init__.py); the paper's model has none

    def args(self):
        """The settings as one flat dict (a composed config adds its extensions' objects' settings)."""
        return dict(vars(self))

    def validate(self):
        check_values(type(self).groups, self.args())

VOCAB = fields_group('the data (train.py sets it from the data dir)', GPTConfig, ('vocab_size',))
BACKBONE = fields_group('model (GPT-2 small; paper Table 1)', GPTConfig, (
    'block_size', 'n_layer', 'n_head', 'n_embd', 'dropout', 'bias', 'embedding', 'attention', 'ffn', 'block'), check=check_backbone)
ENGRAM = fields_group('Engram memory (paper §3, Table 1/2)', GPTConfig, (
    'memory', 'engram_layers', 'ngram_orders', 'engram_heads', 'engram_head_dim', 'table_size', 'hot_size', 'engram_hash',
    'engram_hash_seed'), check=check_engram)
LOSS = fields_group('the training loss', GPTConfig, ('label_smoothing',))
GPTConfig.groups = (VOCAB, BACKBONE, ENGRAM, LOSS)


class Extension:
    """The hooks through which code beyond the paper changes a GPT built from a config that carries it
    (config.extensions); each default leaves the paper's model."""

    def memory_mixins(self, config):            # classes put in front of the memory kind (engram.MEMORY)
        return ()

    def gate_mixins(self, config):              # classes put in front of engram.EngramGate
        return ()

    def needs_hot(self, config):                # whether training forwards need hot slots
        return False

    def needs_counts(self, config):             # whether the index must hold the training count of every n-gram
        return False

    def index_class(self, config):              # another engram.NgramIndex, or None
        return None

    def extend_index(self, index, config, data_dir, meta):     # what the index needs beyond the hot tier (buffers)
        pass

    def regularizers(self, config, noise):      # changes of the memory vector e, training only (GPT.memory_vector)
        return []

    def aux_losses(self, config):               # loss terms, training only (GPT.forward)
        return []

    def after_init(self, model, shapes_only):   # the built model's last changes (data-derived buffers, adapters)
        pass

    def param_counts(self, model):              # its own parameter counts, {name: n}, apart from the backbone
        return {}

    # the run's hooks (train.py calls them at fixed points; cfg: the run's settings)
    def noise(self, cfg):                       # the forward's deterministic noise (mdmix.Noise), or None
        return None

    def host_table_conflicts(self, cfg):        # settings that read or decay table rows beyond each step's own reads
        return []

    def base_state(self, state, model):         # a fine-tune's base weights as this model names them, and keys they lack
        return state, []

    fine_tune_settings = ()                     # model settings a fine-tune sets itself, not taken from its base

    def after_base(self, model):                # after a fine-tune's base weights are loaded
        pass

    def after_step(self, model, it, lr, cfg):   # after each optimizer step
        pass


def with_mixins(base, mixins):
    """base with the classes of mixins in front of it (cooperative: each calls super())."""
    return type('+'.join(m.__name__ for m in mixins) + '+' + base.__name__, (*mixins, base), {}) if mixins else base

def needs_counts(config):
    return any(e.needs_counts(config) for e in config.extensions)

def index_class(config):
    """The index kind a config routes with: engram.NgramIndex unless an extension replaces it."""
    return next((k for e in config.extensions if (k := e.index_class(config)) is not None), NgramIndex)


class GPT(nn.Module):

    def __init__(self, config, index=None, noise=None, shapes_only=False):
        """index: engram.NgramIndex built from the data dir (factory.load_index); needed for memory
        and for is_hot labels. noise: an mdmix.Noise, or None (no MD-mix regularization). shapes_only: the
        parameters without what the parts compute from the data (post_init, the extensions' after_init): the
        meta-device size estimate (engramlib.footprint.check_memory), where such computations cannot run."""
        super().__init__()
        config.validate()
        self.config = config
        ext = config.extensions
        if has_memory(config.memory) and index is None:
            raise ValueError(f"memory={config.memory!r} needs the data dir's n-gram index")
        if needs_counts(config) and not index.has_counts:
            raise ValueError("this config needs the training count of every n-gram in the index (factory.load_index)")
        self.index, self.noise = index, noise
        memory = with_mixins(MEMORY[config.memory], [m for e in ext for m in e.memory_mixins(config)]) if has_memory(config.memory) else None
        self.memory = memory(config) if memory is not None else None
        self.engram_layers = tuple(config.engram_layers) if self.memory is not None else ()
        self.needs_hot = (has_hot_tier(config.memory) or any(e.needs_hot(config) for e in ext)
                          or (noise is not None and noise.needs_hot))
        self.regularizers = [r for e in ext for r in e.regularizers(config, noise)]     # training only
        self.aux_losses = [a for e in ext for a in e.aux_losses(config)]                # training only
        gate = with_mixins(EngramGate, [m for e in ext for m in e.gate_mixins(config)])
        lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer = nn.ModuleDict(dict(
            wte=EMBEDDINGS[config.embedding](config, lm_head),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([BLOCKS[config.block](config, i, gate(config, self.memory.dim) if i in self.engram_layers else None)
                             for i in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = lm_head
        self.loss_chunk = 0          # rows of logits at a time in the loss (engramlib/linear_ce.py); 0: the plain head. A run
                                     # setting, not the model's: train.py sets it (on CUDA by default)
        self.sdpa_backend = 'auto'   # attention's SDPA kernel (layers.SDPA_BACKENDS): a run setting too
        self.stack = BLOCKS[config.block].stack     # how the blocks run, one by one or as a whole (extensions/mdx/reversible.py)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():   # GPT-2: scaled init of the residual projections
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        for m in self.modules() if not shapes_only else ():   # parts with their own init or that read the built model (its index)
            if hasattr(m, 'post_init'):
                m.post_init(self)
        for e in ext:
            e.after_init(self, shapes_only)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def param_counts(self):
        """backbone / tables / gate / the extensions' own (e.g. adapter) parameter counts (tied embedding counted
        once), and inside the backbone: the output head, and the token embedding's own parameters (0 when tied)."""
        tables = self.memory.table.weight.numel() if self.memory is not None else 0
        head = {id(p) for p in self.lm_head.parameters()}
        embedding = sum(p.numel() for p in self.transformer.wte.parameters() if id(p) not in head)
        gate = sum(p.numel() for b in self.transformer.h if b.engram is not None for p in b.engram.parameters())
        own = {k: n for e in self.config.extensions for k, n in e.param_counts(self).items()}
        total = self.dense_params() + tables
        return {'backbone': total - tables - gate - sum(own.values()), 'tables': tables, 'gate': gate, **own, 'total': total,
                'head': self.lm_head.weight.numel(), 'embedding': embedding}

    def dense_params(self):
        """Parameters but the memory tables (which may live apart from the model: engramlib/offload.py)."""
        table = self.memory.table.weight if self.memory is not None else None
        return sum(p.numel() for p in self.parameters() if p is not table)

    def forward(self, idx, targets=None, prev=None, step=0, diag=False, kv=None):
        """idx (B,T) token ids; prev (B, max_order-1) the tokens before them (None: the stream's start);
        kv: a KVCache holding the tokens before idx (sampling). Returns logits, loss (None without targets)
        and info: with diag=True the per-position loss, alpha per Engram layer (L, B, T) and is_hot per
        order (O, B, T), else {}."""
        B, T = idx.shape
        pos = kv.pos if kv is not None else 0
        assert pos + T <= self.config.block_size, f"sequence of {pos + T} tokens > block_size {self.config.block_size}"
        noise = self.noise.bind(idx, step) if self.noise is not None and self.training else NO_NOISE
        fwd = ForwardPass(self, idx, self.route(idx, prev, diag), noise, kv, step)
        x = self.hidden(fwd)
        if kv is not None:
            kv.pos += T

        if targets is None:   # inference: only the last position's logits
            return self.lm_head(x[:, [-1], :]), None, {}
        logits, losses, loss = self.token_losses(x, targets, fwd)
        for aux in (self.aux_losses if self.training else ()):
            loss = loss + aux(fwd, losses.detach(), targets)
        info = {} if not diag else {'loss': losses.view(B, T).detach(), 'is_hot': fwd.route.is_hot_order,
                                    'alpha': torch.stack(fwd.alphas).detach() if fwd.alphas else None}
        return logits, loss, info

    def hidden(self, fwd):
        """Embeddings, the Engram layers' memory vectors, the blocks and the final norm: (B, T, C)."""
        T, pos = fwd.idx.shape[1], fwd.kv.pos if fwd.kv is not None else 0
        x = self.transformer.wte(fwd.idx) + self.transformer.wpe(torch.arange(pos, pos + T, device=fwd.idx.device))
        x = self.transformer.drop(fwd.noise('emb', x))
        fwd.memory = {l: self.memory_vector(fwd, l) for l in self.engram_layers}
        with sdpa_backend(self.sdpa_backend):
            x = self.stack(self.transformer.h, x, fwd)
        return self.transformer.ln_f(x)

    def token_losses(self, x, targets, fwd):
        """Logits, the per-position cross-entropy (flattened) of hidden states x and its mean, the training loss; with
        loss_chunk, no logits (never whole: None) and the losses detached (the mean carries the gradient)."""
        smoothing = self.config.label_smoothing if self.training else 0.0
        if self.loss_chunk:
            return None, *chunked_cross_entropy(x, self.lm_head.weight, targets, self.loss_chunk, smoothing, fwd.noise)
        logits = fwd.noise('logits', self.lm_head(x))
        losses = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction='none',
                                 label_smoothing=smoothing)
        return logits, losses, losses.mean()

    def route(self, idx, prev, diag):
        """The n-gram route of the batch (keys; hot slots where the model or the diagnostics need them),
        once per forward. None for the baseline outside diagnostics."""
        if self.index is None or (self.memory is None and not diag):
            return None
        return self.index.route(idx, prev, hot=self.needs_hot or diag)

    def memory_vector(self, fwd, layer):
        """e_t of one Engram layer (Eq. 2): layers that read the same tables the same way share one read."""
        use_hot, table_set = self.memory.reads[layer]
        def read():
            e = self.memory(fwd.rows(use_hot), table_set)
            for regularize in (self.regularizers if self.training else ()):
                e = regularize(e, fwd, use_hot, table_set)
            return e
        return fwd.once(('e', use_hot, table_set), read)

    def estimate_mfu(self, tokens_per_iter, dt, peak_flops):
        """Model FLOPs utilization against `peak_flops` (the device's real peak; see device_peak_flops).
        Counts 6N per token for the dense weights (memory tables are gathered, not multiplied) plus attention."""
        N = self.dense_params()
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        flops_per_token = 6 * N + 12 * L * H * Q * T
        return flops_per_token * tokens_per_iter / dt / peak_flops if peak_flops else float('nan')

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True,
                 generator=None, logits_out=None):
        """Sample continuations of idx (B, t). Each step conditions on the last block_size tokens, whose
        n-gram context is the real text before them (the pad id only before the prompt's first token).
        use_cache: a KV cache, so a step computes one new token instead of the whole window; once the
        window slides past block_size (GPT-2's positions are absolute), every step re-reads the window,
        as without a cache, so both give the same logits. temperature 0 = greedy; logits_out collects
        each step's logits."""
        T = self.config.block_size
        kv = None
        for _ in range(max_new_tokens):
            if use_cache and kv is not None and kv.pos < T:
                logits = self(idx[:, -1:], prev=self.context(idx, idx.size(1) - 1), kv=kv)[0]
            else:                            # no cache, the first step, or a full window: read the window
                start = max(0, idx.size(1) - T)
                kv = KVCache() if use_cache else None
                logits = self(idx[:, start:], prev=self.context(idx, start), kv=kv)[0]
            logits = logits[:, -1, :].float()
            if self.index is not None:          # never the ids that only pad the vocabulary to a multiple of 64
                logits[:, self.index.pad_token:] = -float('inf')
            if logits_out is not None:
                logits_out.append(logits)
            idx = torch.cat((idx, sample_token(logits, temperature, top_k, top_p, generator)), dim=1)
        return idx

    def context(self, idx, start):
        """The max_order-1 tokens before position `start` of idx, padded at the stream's start."""
        n_prev = self.index.max_order - 1 if self.index is not None else 0
        prev = idx[:, max(0, start - n_prev):start]
        if prev.size(1) < n_prev:
            pad = torch.full((idx.size(0), n_prev - prev.size(1)), self.index.pad_token, dtype=idx.dtype, device=idx.device)
            prev = torch.cat([pad, prev], 1)
        return prev


def sample_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token per row of logits (B, V): greedy at temperature 0, else softmax sampling restricted to the
    top_k tokens and to the smallest set whose probability reaches top_p (nucleus)."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = (logits - logits.amax(-1, keepdim=True)) / temperature   # <= 0 before the division: a tiny temperature
                                                                      # gives -inf, never inf - inf = nan
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float('inf'))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - F.softmax(sorted_logits, dim=-1) >= top_p       # keep the tokens until top_p is reached
        drop[:, 0] = False                                           # and the most likely one, whatever top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), -float('inf'))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)
