"""
The optimizer's settings (paper Table 1), the optimizer (nanoGPT's AdamW groups, optionally a lazy row-wise AdamW
for the memory tables) and the per-step maintenance of the gate's variants (§6.3 W_K forgetting, §7.2 extra decay of hot rows).
"""
import inspect
import math

import torch

from configurator import ConfigError
from engramlib.options import Group, Option


def check_optim(c):
    if c['decay_lr'] and c['warmup_iters'] > c['lr_decay_iters']:
        raise ConfigError(f"--warmup_iters {c['warmup_iters']} > --lr_decay_iters {c['lr_decay_iters']}: no decay would happen")
    if c['min_lr'] > c['learning_rate']:
        raise ConfigError(f"--min_lr {c['min_lr']} > --learning_rate {c['learning_rate']}")

OPTIM = Group('AdamW (paper Table 1)', dict(
    learning_rate=Option(6e-4, 'peak learning rate', above=0),
    max_iters=Option(5000, 'training iterations', at_least=0, run_only=True),
    weight_decay=Option(1e-1, 'decoupled weight decay of 2-D weights (tables included)', at_least=0),
    beta1=Option(0.9, 'AdamW beta1 (first-moment decay)', above=0, below=1),
    beta2=Option(0.95, 'AdamW beta2 (second-moment decay; paper 0.95)', above=0, below=1),
    grad_clip=Option(1.0, 'global gradient-norm clip (0 = off)', at_least=0),
    table_optimizer=Option('adamw', "'adamw' (paper: dense, every row every step) | 'rowwise' (lazy, only rows read)",
                           choices=('adamw', 'rowwise')),
    decay_lr=Option(True, 'linear warmup then cosine decay; False = constant learning_rate'),
    warmup_iters=Option(100, 'linear warmup iters', at_least=0),
    lr_decay_iters=Option(5000, 'the cosine reaches min_lr here', at_least=0),
    min_lr=Option(6e-5, 'the end of the cosine', at_least=0),
), check=check_optim)


def get_lr(it, cfg):
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters (nanoGPT)."""
    if not cfg['decay_lr']:
        return cfg['learning_rate']
    if it < cfg['warmup_iters']:
        return cfg['learning_rate'] * (it + 1) / (cfg['warmup_iters'] + 1)
    if it > cfg['lr_decay_iters']:
        return cfg['min_lr']
    ratio = (it - cfg['warmup_iters']) / max(1, cfg['lr_decay_iters'] - cfg['warmup_iters'])
    return cfg['min_lr'] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg['learning_rate'] - cfg['min_lr'])


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
            rows = updated_rows(p.grad)
            p[rows], st['exp_avg'][rows], st['exp_avg_sq'][rows], st['row_step'][rows] = adamw_rows(
                p[rows], p.grad[rows], st['exp_avg'][rows], st['exp_avg_sq'][rows], st['row_step'][rows],
                g['lr'], g['weight_decay'], beta1, beta2, g['eps'])


def updated_rows(grad):
    """The rows a row-wise step updates: those with a nonzero gradient (ascending). A row read this step whose
    gradient is exactly zero is not updated (the same rule for tables on the device and in host memory)."""
    return grad.ne(0).any(1).nonzero().squeeze(1)


def adamw_rows(w, grad, m, v, t, lr, weight_decay, beta1, beta2, eps):
    """AdamW on some rows of a table (gathered): their weights, gradients, moments and own step counts t.
    Returns the new w, m, v, t. Bias correction counts each row's own updates."""
    t = t + 1
    m = m.lerp(grad, 1 - beta1)
    v = v.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (v / (1 - beta2 ** t).unsqueeze(1)).sqrt_().add_(eps)
    w = w * (1 - lr * weight_decay)                                  # decoupled weight decay, touched rows
    w -= lr * (m / (1 - beta1 ** t).unsqueeze(1)) / denom
    return w, m, v, t


def clip_rowwise(params, table, max_norm):
    """Gradient clipping when the tables are updated row-wise: the global norm counts the table's gradient through
    its updated rows only, last (a dense (rows, d) gradient and a staged one give the same norm, to the bit: the same
    values in the same order). params: every other parameter; table: the tensor whose .grad is the table's (rows, d)
    gradient (the table on the device, the staged rows of host tables). Gradients are scaled in place."""
    params = [p for p in params if p.grad is not None]
    rows = table.grad[updated_rows(table.grad)]
    total = torch.nn.utils.get_total_norm([*(p.grad for p in params), rows])
    torch.nn.utils.clip_grads_with_norm_([*params, table], max_norm, total)


def clip_and_step(optimizer, tables, model, wrapped, cfg):
    """The update after an iteration's backward, as train.py runs it and bench.py times it: the global gradient-norm
    clip (cfg's grad_clip, 0 = none; through the tables, which know where their gradients are), AdamW, the gradients
    freed. The tables' own update comes after it (tables.after_step)."""
    if cfg['grad_clip'] != 0.0:
        tables.clip(model, wrapped, cfg['grad_clip'])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def configure_optimizers(model, weight_decay, learning_rate, betas, device_type, table_optimizer='adamw'):
    """nanoGPT's groups: every 2-D tensor (matmuls, embeddings, memory tables) decays; biases and
    norm gains do not. Fused AdamW on CUDA. table_optimizer='rowwise' gives the memory tables a lazy,
    row-wise AdamW that only touches the rows read this step (the paper's dense AdamW is the default)."""
    table = model.memory.table.weight if (model.memory is not None and table_optimizer == 'rowwise') else None
    table = table if isinstance(table, torch.nn.Parameter) else None       # host tables: their own update (engramlib/offload.py)
    params = [p for p in model.parameters() if p.requires_grad and p is not table]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
    if table is not None:
        groups.append({'params': [table], 'weight_decay': weight_decay, 'rowwise': True})
    fused = device_type == 'cuda' and 'fused' in inspect.signature(torch.optim.AdamW).parameters
    return RowwiseAdamW(groups, lr=learning_rate, betas=betas, **({'fused': True} if fused else {}))


def hot_rows(memory):
    """The hot tier's table rows as a strided view (sets x orders, hot rows x K, d): each order's block of rows
    starts with its hot rows, so a slice reaches them all, with no boolean mask (whose nonzero is a host sync)
    and no gather/scatter."""
    per_order = memory.rows_per_set // len(memory.orders)
    return memory.table.weight.view(-1, per_order, memory.d)[:, :memory.hot_rows * memory.K]


@torch.no_grad()
def gate_maintenance(model, it, lr, wk_decay=0.0, wk_reset_interval=0, hot_weight_decay=0.0):
    """After each optimizer step (§6.3 / §7.2): let W_K forget early preferences (multiplicative decay
    or periodic re-initialization), and decay the hot tier's rows harder than the rest."""
    for block in model.transformer.h:
        if block.engram is None:
            continue
        for w in (block.engram.w_k, getattr(block.engram, 'w_k_cold', None)):
            if w is None:
                continue
            if wk_decay:
                w.weight.mul_(1 - wk_decay)
            if wk_reset_interval and it > 0 and it % wk_reset_interval == 0:
                torch.nn.init.normal_(w.weight, mean=0.0, std=0.02)
    if hot_weight_decay and model.memory is not None and model.memory.hot_tier:
        hot_rows(model.memory).mul_(1 - lr * hot_weight_decay)
