"""
GPT-2 (nanoGPT) with optional Engram memory at `engram_layers` (paper §3, SPEC §3-4).
memory = 'none' (baseline) | 'hash' (multi-head hashed tables) | 'nine' (MPHF hot tier + hashed cold tier).
Block indices in engram_layers are 0-based, like the DeepSeek Engram demo's layer_ids.

The parts of a block are chosen from the config at construction, through the registries at the end of
this file: a new attention, FFN, block or token-embedding kind is one module plus one entry there.
The paper's variants (variants.py) and MD-mix noise (mdmix.py) are also chosen once, at construction.
"""
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import variants
from mdmix import NO_NOISE
from mdx import attention_lsh, attention_sketch, cs_lora, embeddings, hash_moe, pkm, reversible

PEAK_FLOPS = {'H200': 989e12, 'H100': 989e12, 'A100': 312e12, 'L40S': 362e12, 'L4': 121e12,
              'A10': 125e12, '4090': 165e12, '3090': 71e12, 'V100': 125e12}   # dense bf16/fp16 tensor-core peaks

def autocast_context(device_type, dtype):
    """Mixed precision as training runs it: bf16/fp16 autocast (CPU too, so CPU tests see the dtype
    mixes a GPU run sees), or nothing for float32."""
    if dtype in ('float32', torch.float32):
        return nullcontext()
    return torch.autocast(device_type, dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype)

def device_peak_flops(device):
    """The device's own peak, so MFU is not always quoted against an A100."""
    if not device.startswith('cuda'):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)

@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304       # the data's vocabulary padded up to a multiple of 64 (faster matmuls)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    # the parts of the network (registries at the end of this file)
    embedding: str = 'tied'       # 'tied' (GPT-2) | 'untied' | 'lowrank' | 'mihe' (mdx/embeddings.py)
    embed_rank: int = 64          # lowrank: the factor's rank
    embed_tables: int = 2         # mihe: T tables, each giving n_embd / T of the vector
    embed_buckets: int = 8192     # mihe: B rows per table
    embed_hash: str = 'mdmix'     # mihe: 'mdmix' (MD-mix, a salt per table) | 'mulxor' (the Engram hash)
    embed_hash_seed: int = 0
    embed_seed_choices: int = 1   # mihe: S > 1 candidate seeds per table, chosen by straight-through learned logits
    attention: str = 'causal'     # 'causal' (GPT-2, SDPA) | 'lsh' (mdx/attention_lsh.py) | 'sketch' | 'bucket' (mdx/attention_sketch.py)
    lsh_bucket_size: int = 64     # lsh: mean keys per bucket (T // it buckets) and the sorted chunk length
    lsh_rounds: int = 2           # lsh: hash rounds
    lsh_window: int = 64          # lsh: every query also reads the keys up to this many - 1 positions back
    sketch_width: int = 4         # sketch: CountSketch width r
    sketch_tau: float = 2.0       # sketch: pairs whose sketched score is more than tau below the row's best are skipped
    bucket_count: int = 8         # bucket: key buckets
    bucket_tau: float = 0.01      # bucket: buckets whose bound on their output contribution is below tau are dropped
    ffn: str = 'mlp'              # 'mlp' (GPT-2) | 'moe' (mdx/hash_moe.py)
    moe_experts: int = 4          # moe: E experts, each GPT-2's MLP
    moe_router: str = 'hash'      # moe: 'hash' (MD-mix of the token id) | 'balanced' (by unigram counts) | 'switch' (learned top-1)
    moe_choices: int = 1          # moe hash: hashed candidate experts per token (> 1: the one with the highest load bias)
    moe_capacity: float = 1.25    # moe: tokens per expert at most, as a multiple of tokens / E
    moe_bias_rate: float = 0.0    # moe: loss-free balancing, the load bias step (switch, or hash with choices > 1)
    pkm_layers: tuple = (2, 4, 6) # pkm: blocks whose FFN adds a product-key memory (mdx/pkm.py)
    pkm_keys: str = 'seeded'      # pkm: 'seeded' (fixed MD-mix codes) | 'learned' sub-keys
    pkm_subkeys: int = 256        # pkm: n sub-keys per half: n^2 memory slots
    pkm_key_dim: int = 32         # pkm: query dims per half
    pkm_topk: int = 8             # pkm: sub-keys kept per half, and slots read
    block: str = 'prenorm'        # 'prenorm' (GPT-2) | 'reversible' (mdx/reversible.py: activations recomputed in backward)
    # Engram (paper Table 1/2)
    memory: str = 'none'
    engram_layers: tuple = (2, 4, 6)
    ngram_orders: tuple = (2, 3)
    engram_heads: int = 2         # K hashed heads per order
    engram_head_dim: int = 64     # d per head; memory vector = orders * K * d
    table_size: int = 500_000     # slots per hashed head (Hash) / per cold head (Nine)
    hot_size: int = 100_000       # Nine's hot rows per order; also the is_hot label for every model
    engram_hash: str = 'mulxor'   # 'mulxor' | 'mdmix'
    engram_hash_seed: int = 0
    label_smoothing: float = 0.0
    # variants (variants.py; §6.3, §7.2, the DeepSeek demo); defaults = the paper's model
    engram_shared_tables: bool = True
    engram_gate: str = 'sigmoid'  # 'sigmoid' (paper Eq. 4) | 'signed_sqrt' (DeepSeek demo)
    engram_short_conv: bool = False
    hot_index: str = 'mphf'       # 'mphf' (collision-free) | 'hashed' (tiered, hot rows hashed: membership-only Nine)
    hot_collision: int = 1        # N_hot hot keys share ceil(N_hot / c) hot rows (controlled collisions)
    gate_keys: str = 'shared'     # 'shared' W_K | 'decoupled' W_K^hot and W_K^cold
    gate_inputs: tuple = ()       # any of 'is_hot', 'log_freq', 'collision'
    hot_layers: tuple = ()        # Engram layers that use the hot tier (Nine); () = all of them
    hot_dropout: float = 0.0      # dropout of whole hot rows (Nine)
    hot_fingerprint_bits: int = 0 # 0: exact membership (stored key); b: Algorithm 1's b-bit fingerprint check
    hot_collision_mode: str = 'random'  # how hot_collision shares rows: 'random' (MPHF slot) | 'semantic' (next-token counts)
    gate_credit: float = 0.0      # weight of the gate credit loss: alpha where the memory read does not help (§7.2 (4))
    hot_teacher: float = 0.0      # weight of the hot-teacher loss: cold rows of hot n-grams pulled to their hot read
    hot_ramp_iters: int = 0       # phased hot tier: hot reads blend in from their cold read over these iters (training)
    hot_reg_ramp_iters: int = 0   # hot_dropout and hot_weight_decay ramp from 0 over these iters
    # adapters for fine-tuning (mdx/cs_lora.py): 'none' | 'lora' | 'cslora' (Count-Sketch LoRA)
    adapter: str = 'none'
    adapter_rank: int = 8
    adapter_pool: int = 0         # cslora: parameters in its shared pools (0 = as many as LoRA of adapter_rank)

    def validate(self):
        """Clear messages for shapes that cannot work."""
        for name, registry in (('embedding', EMBEDDINGS), ('attention', ATTENTION), ('ffn', FFN), ('block', BLOCKS)):
            assert getattr(self, name) in registry, f"{name} must be one of {sorted(registry)}, got {getattr(self, name)!r}"
        assert self.memory in ('none', 'hash', 'nine'), f"memory must be 'none', 'hash' or 'nine', got {self.memory!r}"
        assert self.n_embd % self.n_head == 0, f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}"
        assert self.embed_hash in ('mdmix', 'mulxor'), f"embed_hash must be 'mdmix' or 'mulxor', got {self.embed_hash!r}"
        assert self.embedding != 'mihe' or self.n_embd % self.embed_tables == 0, \
            f"n_embd {self.n_embd} must be divisible by embed_tables {self.embed_tables}"
        assert self.moe_router in ('hash', 'balanced', 'switch'), f"moe_router must be 'hash', 'balanced' or 'switch', got {self.moe_router!r}"
        assert self.ffn != 'moe' or (self.moe_experts >= 1 and self.moe_choices >= 1 and self.moe_capacity > 0), \
            "moe_experts and moe_choices must be >= 1 and moe_capacity > 0"
        assert self.pkm_keys in ('seeded', 'learned'), f"pkm_keys must be 'seeded' or 'learned', got {self.pkm_keys!r}"
        assert self.ffn != 'pkm' or 0 < self.pkm_topk <= self.pkm_subkeys, "pkm_topk must be in 1..pkm_subkeys"
        bad = [l for l in self.pkm_layers if not 0 <= l < self.n_layer] if self.ffn == 'pkm' else []
        assert not bad, f"pkm_layers {list(self.pkm_layers)} has {bad} outside the model's blocks 0..{self.n_layer - 1}"
        assert self.lsh_bucket_size >= 1 and self.lsh_rounds >= 0 and self.lsh_window >= 1, \
            "lsh_bucket_size and lsh_window must be >= 1, lsh_rounds >= 0"
        assert self.sketch_width >= 1 and self.sketch_tau >= 0 and self.bucket_count >= 1 and self.bucket_tau >= 0, \
            "sketch_width and bucket_count must be >= 1, sketch_tau and bucket_tau >= 0"
        assert self.block != 'reversible' or (self.ffn != 'moe' and not self.gate_credit), \
            "block='reversible' re-runs every block in backward: MoE load statistics would update twice and gate_credit " \
            "needs alpha's graph; use block='prenorm' with ffn='moe' or gate_credit"
        assert self.adapter in ('none', 'lora', 'cslora'), f"adapter must be 'none', 'lora' or 'cslora', got {self.adapter!r}"
        assert self.adapter == 'none' or self.adapter_rank > 0, f"adapter_rank must be > 0, got {self.adapter_rank}"
        if self.memory != 'none':
            bad = [l for l in self.engram_layers if not 0 <= l < self.n_layer]
            assert not bad, f"engram_layers {list(self.engram_layers)} has {bad} outside the model's blocks 0..{self.n_layer - 1}"
            assert self.table_size > 0, f"table_size must be > 0, got {self.table_size}"
            assert self.memory != 'nine' or self.hot_size > 0, f"hot_size must be > 0 for Nine, got {self.hot_size}"
            assert self.engram_hash in ('mulxor', 'mdmix'), f"engram_hash must be 'mulxor' or 'mdmix', got {self.engram_hash!r}"
            assert self.engram_gate in ('sigmoid', 'signed_sqrt'), f"engram_gate must be 'sigmoid' or 'signed_sqrt'"
            assert self.hot_index in ('mphf', 'hashed'), f"hot_index must be 'mphf' or 'hashed', got {self.hot_index!r}"
            assert self.hot_collision >= 1, f"hot_collision must be >= 1, got {self.hot_collision}"
            assert self.gate_keys in ('shared', 'decoupled'), f"gate_keys must be 'shared' or 'decoupled'"
            bad = [g for g in self.gate_inputs if g not in variants.GATE_INPUTS]
            assert not bad, f"gate_inputs {bad} unknown; choose from {variants.GATE_INPUTS}"
            bad = [l for l in self.hot_layers if l not in self.engram_layers]
            assert not bad, f"hot_layers {bad} are not Engram layers {list(self.engram_layers)}"
            assert 0 <= self.hot_dropout < 1, f"hot_dropout must be in [0, 1), got {self.hot_dropout}"
            assert 0 <= self.hot_fingerprint_bits <= 32, f"hot_fingerprint_bits must be in 0..32, got {self.hot_fingerprint_bits}"
            assert self.hot_collision_mode in ('random', 'semantic'), f"hot_collision_mode must be 'random' or 'semantic'"
            assert self.hot_collision_mode == 'random' or 3 in self.ngram_orders, \
                "hot_collision_mode='semantic' reads next-token counts from the trigram counts: ngram_orders must include 3"
            for k in ('gate_credit', 'hot_teacher', 'hot_ramp_iters', 'hot_reg_ramp_iters'):
                assert getattr(self, k) >= 0, f"{k} must be >= 0, got {getattr(self, k)}"


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


class CausalSelfAttention(nn.Module):
    """GPT-2's attention; kernel: another way to attend (q, k, v, fwd) -> y, for the attention kinds of
    mdx/ (None: scaled_dot_product_attention, flash attention on CUDA)."""

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
        """How a block kind runs the whole stack: GPT.hidden's seam (mdx/reversible.py runs its blocks as one
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


class GPT(nn.Module):

    def __init__(self, config, index=None, noise=None):
        """index: engram.NgramIndex built from the data dir (checkpoint.load_index); needed for memory
        and for is_hot labels. noise: an mdmix.Noise, or None (no MD-mix regularization)."""
        super().__init__()
        config.validate()
        self.config = config
        if config.memory != 'none' and index is None:
            raise ValueError(f"memory={config.memory!r} needs the data dir's n-gram index")
        if variants.needs_counts(config) and not index.has_counts:
            raise ValueError(f"gate_inputs {config.gate_inputs} need the training counts in the index")
        self.index, self.noise = index, noise
        self.memory = variants.memory_class(config)(config) if config.memory != 'none' else None
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
        self.stack = BLOCKS[config.block].stack     # how the blocks run, one by one or as a whole (mdx/reversible.py)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():   # GPT-2: scaled init of the residual projections
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        for m in self.modules():                # parts with their own init (e.g. switched off) or that read the built model (its index)
            if hasattr(m, 'post_init'):
                m.post_init(self)
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
        logits, losses = self.token_losses(x, targets, fwd)
        loss = losses.mean()
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
        """Logits and the per-position cross-entropy (flattened) of hidden states x."""
        logits = fwd.noise('logits', self.lm_head(x))
        losses = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction='none',
                                 label_smoothing=self.config.label_smoothing if self.training else 0.0)
        return logits, losses

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
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float('inf'))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - F.softmax(sorted_logits, dim=-1) >= top_p       # keep the tokens until top_p is reached
        logits = logits.masked_fill(drop.scatter(1, order, drop), -float('inf'))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)


# -----------------------------------------------------------------------------
# The parts a config can choose (GPTConfig.embedding / attention / ffn / block): name -> constructor.
# Attention and FFN kinds are built as Kind(config, layer_idx) and called as part(x, fwd).
EMBEDDINGS = {'tied': tied_embedding, 'untied': embeddings.untied_embedding, 'lowrank': embeddings.LowRankEmbedding,
              'mihe': embeddings.HashEmbedding}
ATTENTION = {'causal': CausalSelfAttention,
             'lsh': lambda config, i: CausalSelfAttention(config, i, attention_lsh.LSHAttention),
             'sketch': lambda config, i: CausalSelfAttention(config, i, attention_sketch.SketchAttention),
             'bucket': lambda config, i: CausalSelfAttention(config, i, attention_sketch.BucketAttention)}
FFN = {'mlp': MLP, 'moe': hash_moe.MoE, 'pkm': pkm.MLPWithPKM}
BLOCKS = {'prenorm': Block, 'reversible': reversible.RevBlock}
