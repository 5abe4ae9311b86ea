"""
GPT-2 (nanoGPT) with optional Engram memory at `engram_layers` (paper §3, SPEC §3-4).
memory = 'none' (baseline) | 'hash' (multi-head hashed tables) | 'nine' (MPHF hot tier + hashed cold tier).
Block indices in engram_layers are 0-based, like the DeepSeek Engram demo's layer_ids.
"""
import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from engram import GATE_INPUTS, EngramGate, EngramMemory, gate_features, hot_row_dropout, n_gate_features

PEAK_FLOPS = {'H200': 989e12, 'H100': 989e12, 'A100': 312e12, 'L40S': 362e12, 'L4': 121e12,
              'A10': 125e12, '4090': 165e12, '3090': 71e12, 'V100': 125e12}   # dense bf16/fp16 tensor-core peaks

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
    # Engram (paper Table 1/2)
    memory: str = 'none'
    engram_layers: tuple = (2, 4, 6)
    ngram_orders: tuple = (2, 3)
    engram_heads: int = 2         # K hashed heads per order
    engram_head_dim: int = 64     # d per head; memory vector = orders * K * d
    table_size: int = 500_000     # slots per hashed head (Hash) / per cold head (Nine)
    hot_size: int = 100_000       # Nine's hot rows per order; also the is_hot label for every model
    engram_shared_tables: bool = True
    engram_hash: str = 'mulxor'   # 'mulxor' | 'mdmix'
    engram_hash_seed: int = 0
    engram_gate: str = 'sigmoid'  # 'sigmoid' (paper Eq. 4) | 'signed_sqrt' (DeepSeek demo)
    engram_short_conv: bool = False
    label_smoothing: float = 0.0
    # the paper's open questions (§6.3, §7.2); defaults = the paper's model
    hot_index: str = 'mphf'       # 'mphf' (collision-free) | 'hashed' (tiered, hot rows hashed: membership-only Nine)
    hot_collision: int = 1        # N_hot hot keys share ceil(N_hot / c) hot rows (controlled collisions)
    gate_keys: str = 'shared'     # 'shared' W_K | 'decoupled' W_K^hot and W_K^cold
    gate_inputs: tuple = ()       # any of 'is_hot', 'log_freq', 'collision'
    hot_layers: tuple = ()        # Engram layers that use the hot tier (Nine); () = all of them
    hot_dropout: float = 0.0      # dropout of whole hot rows (Nine)

    def validate(self):
        """Clear messages for shapes that cannot work."""
        assert self.memory in ('none', 'hash', 'nine'), f"memory must be 'none', 'hash' or 'nine', got {self.memory!r}"
        assert self.n_embd % self.n_head == 0, f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}"
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
            bad = [g for g in self.gate_inputs if g not in GATE_INPUTS]
            assert not bad, f"gate_inputs {bad} unknown; choose from {GATE_INPUTS}"
            bad = [l for l in self.hot_layers if l not in self.engram_layers]
            assert not bad, f"hot_layers {bad} are not Engram layers {list(self.engram_layers)}"
            assert 0 <= self.hot_dropout < 1, f"hot_dropout must be in [0, 1), got {self.hot_dropout}"


class CausalSelfAttention(nn.Module):

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.layer_idx = layer_idx
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x, noise=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        if noise is not None:          # MD-mix regularization on queries and keys
            q, k = noise('q', q, self.layer_idx), noise('k', k, self.layer_idx)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        # flash attention on CUDA
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):

    def __init__(self, config, layer_idx, d_mem=0):
        super().__init__()
        n_feat = n_gate_features(config.gate_inputs, len(config.ngram_orders), config.engram_heads)
        self.engram = EngramGate(config, d_mem, n_feat) if d_mem else None
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, e=None, noise=None, is_hot=None, features=None):
        alpha = None
        if self.engram is not None:    # memory enters the residual stream before attention
            out, alpha = self.engram(x, e, is_hot, features)
            x = x + out
        x = x + self.attn(self.ln_1(x), noise)
        x = x + self.mlp(self.ln_2(x))
        return x, alpha


class RowwiseAdamW(torch.optim.AdamW):
    """AdamW, except that param groups marked 'rowwise' update only rows whose gradient is nonzero
    (lazy Adam: an untouched row keeps its weights and moments; bias correction counts each row's own
    updates). For memory tables, where a step reads a few thousand of 10^5-10^6 rows."""

    def step(self, closure=None):
        groups = self.param_groups
        self.param_groups = [g for g in groups if not g.get('rowwise')]
        try:
            super().step(closure)
        finally:
            self.param_groups = groups
        for g in groups:
            if g.get('rowwise'):
                self._rowwise_step(g)

    @torch.no_grad()
    def _rowwise_step(self, g):
        beta1, beta2 = g['betas']
        for p in g['params']:
            if p.grad is None:
                continue
            st = self.state[p]
            if not st:
                st['exp_avg'], st['exp_avg_sq'] = torch.zeros_like(p), torch.zeros_like(p)
                st['row_step'] = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
                st['step'] = torch.tensor(0.0)   # AdamW's own bookkeeping expects it
            st['step'] += 1
            rows = p.grad.ne(0).any(1).nonzero().squeeze(1)
            grad, m, v = p.grad[rows], st['exp_avg'][rows], st['exp_avg_sq'][rows]
            t = st['row_step'][rows] + 1
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (v / (1 - beta2 ** t).unsqueeze(1)).sqrt_().add_(g['eps'])
            w = p[rows] * (1 - g['lr'] * g['weight_decay'])          # decoupled weight decay, touched rows
            w -= g['lr'] * (m / (1 - beta1 ** t).unsqueeze(1)) / denom
            p[rows], st['exp_avg'][rows], st['exp_avg_sq'][rows], st['row_step'][rows] = w, m, v, t


class GPT(nn.Module):

    def __init__(self, config, index=None, noise=None):
        """index: engram.NgramIndex built from the data dir; needed for memory and for is_hot labels.
        noise: an mdmix.Noise, or None (no MD-mix regularization)."""
        super().__init__()
        config.validate()
        self.config = config
        if config.memory != 'none' and index is None:
            raise ValueError(f"memory={config.memory!r} needs the data dir's n-gram index")
        self.index, self.noise = index, noise
        self.memory = EngramMemory(config) if config.memory != 'none' else None
        d_mem = self.memory.dim if self.memory is not None else 0
        self.engram_layers = tuple(config.engram_layers) if self.memory is not None else ()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i, d_mem if i in self.engram_layers else 0) for i in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight   # weight tying (GPT-2)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():   # GPT-2: scaled init of the residual projections
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
            if pn.endswith('w_feat.weight'):     # extra gate inputs start switched off
                torch.nn.init.zeros_(p)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def param_counts(self):
        """backbone / tables / gate parameter counts (tied embedding counted once)."""
        tables = self.memory.table.weight.numel() if self.memory is not None else 0
        gate = sum(p.numel() for b in self.transformer.h if b.engram is not None for p in b.engram.parameters())
        total = sum(p.numel() for p in self.parameters())
        return {'backbone': total - tables - gate, 'tables': tables, 'gate': gate, 'total': total}

    def forward(self, idx, targets=None, ctx=None, diag=False, step=0):
        """idx (B,T) token ids; ctx (B, max_order-1) the tokens before them (None: stream start).
        diag=True also returns per-position loss, alpha per Engram layer and is_hot per order."""
        B, T = idx.shape
        assert T <= self.config.block_size, f"sequence of {T} tokens > block_size {self.config.block_size}"
        noise = self.noise.bind(idx, step) if self.noise is not None and self.training else None
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T, device=idx.device))
        if noise is not None:
            x = noise('emb', x)
        x = self.transformer.drop(x)

        c = self.config
        slots = hot_orders = is_hot = feats = None
        if self.index is not None and (self.memory is not None or diag):
            n_ctx = self.index.max_order - 1
            if ctx is None:
                ctx = torch.full((B, n_ctx), self.index.pad_token, dtype=idx.dtype, device=idx.device)
            need_hot = (c.memory == 'nine' or diag or c.gate_keys == 'decoupled' or 'is_hot' in c.gate_inputs
                        or (noise is not None and self.noise.needs_hot))
            keys, slots = self.index(torch.cat([ctx[:, ctx.shape[1] - n_ctx:], idx], 1), n_ctx, hot=need_hot)
            if slots is not None:
                hot_orders = torch.stack([slots[k] >= 0 for k in self.index.orders])   # (O, B, T)
                is_hot = hot_orders.any(0)
            if self.memory is not None:
                rows = self.memory.rows(keys, slots)     # once per forward, shared by all Engram layers
                rows_cold = (self.memory.rows(keys, slots, use_hot=False)   # layers without the hot tier
                             if self.memory.nine and set(c.hot_layers or self.engram_layers) != set(self.engram_layers) else None)
                if c.gate_inputs:
                    feats = gate_features(c.gate_inputs, is_hot, keys, rows, self.index, self.memory)
        memory = {}   # (cold route?, table set) -> e: shared tables are read once per forward
        alphas = []
        for i, block in enumerate(self.transformer.h):
            e = None
            if block.engram is not None:
                cold = rows_cold is not None and i not in c.hot_layers
                key = (cold, 0 if self.memory.n_sets == 1 else self.engram_layers.index(i))
                if key not in memory:
                    memory[key] = self.read_memory(rows_cold if cold else rows, slots, noise, key[1])
                e = memory[key]
            x, alpha = block(x, e, noise, is_hot, feats)
            if alpha is not None:
                alphas.append(alpha)
        x = self.transformer.ln_f(x)

        if targets is None:   # inference: only the last position's logits
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        if noise is not None:
            logits = noise('logits', logits)
        losses = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction='none',
                                 label_smoothing=self.config.label_smoothing if self.training else 0.0)
        loss = losses.mean()
        if not diag:
            return logits, loss
        info = {'loss': losses.view(B, T).detach(),
                'alpha': torch.stack(alphas).detach() if alphas else None,          # (L_engram, B, T)
                'is_hot': hot_orders}
        return logits, loss, info

    def read_memory(self, rows, slots, noise, layer_set=0):
        """e_t from the tables (Eq. 2), with the training-time regularizers of hot/cold rows."""
        e = self.memory(rows, layer_set)
        if noise is not None:
            e = noise.memory(e, slots)
        if self.training and self.config.hot_dropout > 0 and self.memory.nine:
            e = hot_row_dropout(e, slots, self.config.hot_dropout)
        return e

    @torch.no_grad()
    def gate_maintenance(self, it, lr, wk_decay=0.0, wk_reset_interval=0, hot_weight_decay=0.0):
        """After each optimizer step (§6.3 / §7.2): let W_K forget early preferences (multiplicative decay
        or periodic re-initialization), and decay the hot tier's rows harder than the rest."""
        for block in self.transformer.h:
            if block.engram is None:
                continue
            for w in (block.engram.w_k, block.engram.w_k_cold):
                if w is None:
                    continue
                if wk_decay:
                    w.weight.mul_(1 - wk_decay)
                if wk_reset_interval and it > 0 and it % wk_reset_interval == 0:
                    torch.nn.init.normal_(w.weight, mean=0.0, std=0.02)
        if hot_weight_decay and self.memory is not None and self.memory.nine:
            mask = self.memory.hot_row_mask()
            self.memory.table.weight[mask] *= 1 - lr * hot_weight_decay

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, table_optimizer='adamw'):
        """nanoGPT's groups: every 2-D tensor (matmuls, embeddings, memory tables) decays; biases and
        norm gains do not. Fused AdamW on CUDA. table_optimizer='rowwise' gives the memory tables a lazy,
        row-wise AdamW that only touches the rows read this step (the paper's dense AdamW is the default)."""
        table = self.memory.table.weight if (self.memory is not None and table_optimizer == 'rowwise') else None
        params = [p for p in self.parameters() if p.requires_grad and p is not table]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
        if table is not None:
            groups.append({'params': [table], 'weight_decay': weight_decay, 'rowwise': True})
        fused = device_type == 'cuda' and 'fused' in inspect.signature(torch.optim.AdamW).parameters
        return RowwiseAdamW(groups, lr=learning_rate, betas=betas, **({'fused': True} if fused else {}))

    def estimate_mfu(self, tokens_per_iter, dt, peak_flops):
        """Model FLOPs utilization against `peak_flops` (the device's real peak; see train.device_peak_flops).
        Counts 6N per token for the dense weights (memory tables are gathered, not multiplied) plus attention."""
        N = sum(p.numel() for p in self.parameters()) - (self.memory.table.weight.numel() if self.memory is not None else 0)
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        flops_per_token = 6 * N + 12 * L * H * Q * T
        return flops_per_token * tokens_per_iter / dt / peak_flops if peak_flops else float('nan')

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Sample continuations; the n-gram context of the first kept token is the real preceding text."""
        c = self.index.max_order - 1 if self.index is not None else 0
        for _ in range(max_new_tokens):
            T = self.config.block_size
            cond = idx[:, -T:]
            ctx = idx[:, max(0, idx.size(1) - T - c): idx.size(1) - cond.size(1)] if c else None
            if ctx is not None and ctx.size(1) < c:
                pad = torch.full((idx.size(0), c - ctx.size(1)), self.index.pad_token, dtype=idx.dtype, device=idx.device)
                ctx = torch.cat([pad, ctx], 1)
            logits, _ = self(cond, ctx=ctx)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('Inf')
            idx = torch.cat((idx, torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)), dim=1)
        return idx
