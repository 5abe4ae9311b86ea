"""
GPT-2 (nanoGPT) with optional Engram memory at `engram_layers` (paper §3: hashed tables or the MPHF hot tier, and the gate).
memory = 'none' (baseline) | 'hash' (multi-head hashed tables) | 'nine' (MPHF hot tier + hashed cold tier).
Block indices in engram_layers are 0-based, like the DeepSeek Engram demo's layer_ids.

The parts of a block are chosen from the config at construction, through the registries of layers.py: a new
attention, FFN, block or token-embedding kind is one module that declares its options (an options.Group) plus
one `register` line at the end of this file, which also composes GPTConfig.
The paper's variants (variants.py) and MD-mix noise (mdmix.py) are also chosen once, at construction.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import variants
from engram import ENGRAM, has_memory
from layers import ATTENTION, BACKBONE, BLOCKS, EMBEDDINGS, FFN, CausalSelfAttention, ForwardPass, KVCache
from linear_ce import chunked_cross_entropy
from mdmix import NO_NOISE
from mdx import attention_lsh, attention_sketch, cs_lora, embeddings, hash_moe, pkm, reversible
from options import Group, Option, config_class


class GPT(nn.Module):

    def __init__(self, config, index=None, noise=None, shapes_only=False):
        """index: engram.NgramIndex built from the data dir (checkpoint.load_index); needed for memory
        and for is_hot labels. noise: an mdmix.Noise, or None (no MD-mix regularization). shapes_only: the
        parameters without what the parts compute from the data (post_init, variants.finish): the meta-device
        size estimate (train.check_memory), where such computations cannot run."""
        super().__init__()
        config.validate()
        self.config = config
        if has_memory(config.memory) and index is None:
            raise ValueError(f"memory={config.memory!r} needs the data dir's n-gram index")
        if variants.needs_counts(config) and not index.has_counts:
            raise ValueError(f"gate_inputs {config.gate_inputs} need the training counts in the index")
        self.index, self.noise = index, noise
        self.memory = variants.memory_class(config)(config) if has_memory(config.memory) else None
        self.engram_layers = tuple(config.engram_layers) if self.memory is not None else ()
        self.needs_hot = variants.needs_hot(config, noise)
        self.regularizers = variants.memory_regularizers(config, noise)     # training only
        self.aux_losses = variants.aux_losses(config)                       # training only
        gate = variants.gate_class(config)
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
        self.loss_chunk = 0          # rows of logits at a time in the loss (linear_ce.py); 0: the plain head. A run
                                     # setting, not the model's: train.py sets it (on CUDA by default)
        self.stack = BLOCKS[config.block].stack     # how the blocks run, one by one or as a whole (mdx/reversible.py)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():   # GPT-2: scaled init of the residual projections
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        for m in self.modules() if not shapes_only else ():   # parts with their own init or that read the built model (its index)
            if hasattr(m, 'post_init'):
                m.post_init(self)
        if not shapes_only:
            variants.finish(self)
        if config.adapter != 'none':            # after the init: the base weights are the model's own
            cs_lora.attach(self, config.adapter, config.adapter_rank, config.adapter_pool)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def param_counts(self):
        """backbone / tables / gate / adapter parameter counts (tied embedding counted once), and inside the
        backbone: the output head, and the token embedding's own parameters (0 when tied to the head)."""
        tables = self.memory.table.weight.numel() if self.memory is not None else 0
        head = {id(p) for p in self.lm_head.parameters()}
        embedding = sum(p.numel() for p in self.transformer.wte.parameters() if id(p) not in head)
        gate = sum(p.numel() for b in self.transformer.h if b.engram is not None for p in b.engram.parameters())
        adapter = sum(p.numel() for p in cs_lora.adapter_parameters(self))
        total = sum(p.numel() for p in self.parameters())
        return {'backbone': total - tables - gate - adapter, 'tables': tables, 'gate': gate, 'adapter': adapter, 'total': total,
                'head': self.lm_head.weight.numel(), 'embedding': embedding}

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
        n_prev = self.index.max_order - 1
        if prev is None:
            prev = torch.full((idx.shape[0], n_prev), self.index.pad_token, dtype=idx.dtype, device=idx.device)
        return self.index(torch.cat([prev[:, prev.shape[1] - n_prev:], idx], 1), n_prev, hot=self.needs_hot or diag)

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
        N = sum(p.numel() for p in self.parameters()) - (self.memory.table.weight.numel() if self.memory is not None else 0)
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


# -----------------------------------------------------------------------------
# The kinds a config can choose beyond GPT-2's (layers.py holds the registries), each registered with its
# module's options: a new kind is one module that declares its options plus one line here.

PART_GROUPS = []

def register(registry, name, kind, options):
    registry[name] = kind
    if options not in PART_GROUPS:
        PART_GROUPS.append(options)

register(EMBEDDINGS, 'untied', embeddings.untied_embedding, embeddings.OPTIONS)
register(EMBEDDINGS, 'lowrank', embeddings.LowRankEmbedding, embeddings.OPTIONS)
register(EMBEDDINGS, 'mihe', embeddings.HashEmbedding, embeddings.OPTIONS)
register(ATTENTION, 'lsh', lambda config, i: CausalSelfAttention(config, i, attention_lsh.LSHAttention), attention_lsh.OPTIONS)
register(ATTENTION, 'sketch', lambda config, i: CausalSelfAttention(config, i, attention_sketch.SketchAttention),
         attention_sketch.OPTIONS)
register(ATTENTION, 'bucket', lambda config, i: CausalSelfAttention(config, i, attention_sketch.BucketAttention),
         attention_sketch.OPTIONS)
register(FFN, 'moe', hash_moe.MoE, hash_moe.OPTIONS)
register(FFN, 'pkm', pkm.MLPWithPKM, pkm.OPTIONS)
register(BLOCKS, 'reversible', reversible.RevBlock, reversible.OPTIONS)
PART_GROUPS.append(cs_lora.OPTIONS)     # adapters are attached after the init (GPT.__init__), not a kind of part

# GPTConfig: GPT-2's backbone and the Engram core, composed with the variants' and the registered parts' options
VOCAB = Group('the data (train.py sets it from the data dir)', dict(
    vocab_size=Option(50304, "the data's vocabulary padded up to a multiple of 64 (faster matmuls)", above=0)), model=True)
LOSS = Group('the training loss', dict(
    label_smoothing=Option(0.0, 'cross-entropy label smoothing in training (MD-mix ablation)', at_least=0, below=1)), model=True)
MODEL_GROUPS = [VOCAB, BACKBONE, ENGRAM, variants.VARIANTS, LOSS, *PART_GROUPS]
GPTConfig = config_class('GPTConfig', MODEL_GROUPS, __name__)
