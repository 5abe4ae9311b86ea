"""
Engram's tables in host memory (engram_tables='host'): the paper's promise (§1: indices known from the tokens
alone, so rows can be prefetched from the host) built for training.

The table stays one (rows, d) tensor with the same state-dict key (memory.table.weight), in (pinned) host memory
with its row-wise AdamW moments. Each step reads a few thousand of its rows, and which ones depends on the tokens
only (Eq. 1, Algorithm 1), so before step t+1's forward:
  1. its rows are computed on the CPU from its tokens (a CPU copy of the index and the memory's row function);
  2. the rows step t does not read are gathered from host memory and copied to the device on a side stream while
     step t runs (`prefetch`): no step can change them before t+1 reads them;
  3. after step t's update, the rows both steps read come from step t's updated rows on the device (`advance`):
     a row read by batch t+1 and updated at step t arrives updated;
  4. step t's updated rows start back to host memory on the side stream and land there at the next prefetch (the
     first thing that reads host memory after them), so the loop never waits on the copy or on the CPU's scatter.
Nine's hot tier (a few hundred thousand rows, read by most positions) stays on the device with its moments: its
rows are staged from there and written back there, never crossing to the host during training; host memory gets
them back before an eval reads the table or a checkpoint saves it (`sync`).
The forward reads the staged rows (HostTable); the backward leaves their gradient on the device; the row-wise
AdamW (optim.adamw_rows, the same arithmetic as table_optimizer='rowwise' on the device) updates the rows with a
nonzero gradient there, and they are written back to host memory. Evaluation reads rows from host memory directly,
after `sync` (the pending write-back and the hot tier).
On a CPU host and device coincide: the same run, byte for byte, as table_optimizer='rowwise' with device tables.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from engramlib.optim import adamw_rows, clip_rowwise, updated_rows


class DeviceTables:
    """engram_tables='device' (the paper's): the tables are parameters like any other, updated by the optimizer with
    the rest. The training loop calls the same points as on HostTables; here they do nothing but the clip and the
    optimizer's state, which are the plain ones (row-wise when table_optimizer='rowwise')."""

    def __init__(self, table_optimizer):
        self.rowwise = table_optimizer == 'rowwise'

    # the loop's four points (HostTables stages, updates and writes back rows at them)
    def start(self, it, windows, device):           # before the first step of this process
        pass

    def after_backward(self, it, windows, device):  # while the device works through a step's kernels
        pass

    def after_step(self, lr, weight_decay, betas, device):
        pass

    def before_read(self):                           # before an eval reads the tables or a checkpoint saves them
        pass

    def clip(self, model, wrapped, max_norm):
        """The global gradient-norm clip; a row-wise table counts through its updated rows (optim.clip_rowwise), so
        device and host tables give the same norm."""
        if self.rowwise and model.memory.table.weight.grad is not None:
            table = model.memory.table.weight
            clip_rowwise([p for p in model.parameters() if p is not table], table, max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(wrapped.parameters(), max_norm)

    def drop_grads(self):
        pass

    def named_tensors(self):                         # state kept outside the model and the optimizer
        return []

    def optimizer_state(self, optimizer):
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer, sd):
        optimizer.load_state_dict(sd)

    def summary(self):
        return {}


class HostTable(nn.Module):
    """memory.table with its weight in host memory (a buffer under the same key, which model.to(device) leaves on
    the host) and, during a training step, the step's rows staged on the device (`rows` ascending, `staged`)."""

    def __init__(self, weight, pin):
        super().__init__()
        self.register_buffer('weight', weight.pin_memory() if pin else weight)
        self.rows, self.staged = None, None

    def _apply(self, fn, recurse=True):         # .to(device) / .cuda() / .half() move everything but the table
        weight = self._buffers.pop('weight')
        try:
            return super()._apply(fn, recurse)
        finally:
            self._buffers['weight'] = weight

    @torch.compiler.disable                      # the staged rows change shape every step: no graph of their own
    def forward(self, ids):
        if self.training and self.staged is not None:
            return F.embedding(torch.searchsorted(self.rows, ids), self.staged)
        return F.embedding(ids.to(self.weight.device), self.weight).to(ids.device)


class HostTables:
    """The host side of engram_tables='host': the table and its row-wise AdamW state in host memory, the CPU
    router, the staging of each step's rows, their update and write-back, and counters of what moved."""

    def __init__(self, model, pin):
        """model: built on the CPU, before model.to(device) (the table never reaches the device whole)."""
        mem = model.memory
        self.table = mem.table = HostTable(mem.table.weight.detach(), pin)
        w = self.table.weight
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(w), torch.zeros_like(w)
        self.row_step = torch.zeros(w.shape[0], dtype=torch.float32)
        if pin:
            self.exp_avg, self.exp_avg_sq, self.row_step = (t.pin_memory() for t in (self.exp_avg, self.exp_avg_sq, self.row_step))
        self.index, self.memory = copy.deepcopy(model.index), cpu_copy_without_table(mem)
        self.hot_ids = mem.hot_row_ids()    # the hot tier's rows, ascending (none for Hash): resident on the device
        self.hot = None                     # their weight and AdamW state there, placed at the first advance()
        self.hot_changed = False            # updated there since host memory last got them back
        self.pending = None                 # the last update's rows on their way back to host memory (flush())
        self.reads = sorted(set(mem.reads.values()))
        self.stream = None
        self.rows_cpu = torch.empty(0, dtype=torch.long)    # the staged rows, a CPU copy (no device sync to read them)
        self.updates = 0                # optimizer steps of the table (its AdamW 'step' in a checkpoint)
        self.next = None                # what prefetch() gathered for the next step
        self.counters = {'steps': 0, 'rows_staged': 0, 'rows_shared': 0, 'rows_hot': 0, 'rows_updated': 0, 'bytes_in': 0,
                         'bytes_out': 0, 'lookups': 0, 'hot_lookups': 0}
        # rows_shared: staged from the step before; rows_hot: from the resident hot tier; lookups: (position, order)
        # pairs routed, hot_lookups: those the hot tier answered

    # the training loop's four points; windows(it): iteration it's micro-batches (x, prev) of this process, on the CPU
    def start(self, it, windows, device):
        """Before the first step: its rows staged."""
        self.prefetch(self.step_rows(windows(it)), device)
        self.advance(device)

    def after_backward(self, it, windows, device):
        """Iteration it's rows (the next step's), while the device works through this step's queued kernels."""
        self.prefetch(self.step_rows(windows(it)), device)

    def after_step(self, lr, weight_decay, betas, device):
        """The step's rows updated and written back, the next step's staged."""
        self.update(lr, weight_decay, betas)
        self.advance(device)

    def before_read(self):
        self.sync()

    def clip(self, model, wrapped, max_norm):
        clip_rowwise(model.parameters(), self.table.staged, max_norm)

    def drop_grads(self):
        self.table.staged.grad = None

    def named_tensors(self):
        return [('host table', self.table.weight), ('host table exp_avg', self.exp_avg), ('host table exp_avg_sq', self.exp_avg_sq)]

    def summary(self):
        return {'host_tables': self.counters}

    def host_state(self):
        return self.table.weight, self.exp_avg, self.exp_avg_sq, self.row_step

    def resident(self, device):
        """The hot tier's rows (weight, exp_avg, exp_avg_sq, row_step) on the device, copied there on first use."""
        if self.hot is None:
            self.hot = [t[self.hot_ids].to(device) for t in self.host_state()]
        return self.hot

    def sync(self):
        """Host memory gets everything back (before an eval reads the table or a checkpoint saves it): the last
        update's rows, and the resident hot rows once per change (an eval and a save at the same iter copy them once)."""
        self.flush()
        if self.hot_changed:
            for dst, src in zip(self.host_state(), self.hot):
                dst[self.hot_ids] = src.cpu()
            self.hot_changed = False

    def side_stream(self, device):
        self.stream = self.stream or torch.cuda.Stream(device)
        return self.stream

    def flush(self):
        """The last update's rows land in host memory (their copy from the device waited for, then scattered)."""
        if self.pending is None:
            return
        rows, parts, copied = self.pending
        if copied is not None:
            copied.synchronize()
        for dst, p in zip(self.host_state(), parts):
            dst[rows] = p
        self.pending = None

    def hot_positions(self, rows):
        """Which of `rows` (CPU, any order) the hot tier holds: a mask, and their positions in the resident rows."""
        if not len(self.hot_ids):
            return torch.zeros_like(rows, dtype=torch.bool), rows[:0]
        at = torch.searchsorted(self.hot_ids, rows).clamp_(max=len(self.hot_ids) - 1)
        hot = self.hot_ids[at] == rows
        return hot, at[hot]

    def step_rows(self, windows):
        """Every table row a step's micro-batches (x, prev) read: sorted, unique (CPU)."""
        ids = []
        for x, prev in windows:
            route = self.index.route(x, prev, hot=self.memory.hot_tier)
            self.counters['lookups'] += x.numel() * len(route.keys)
            self.counters['hot_lookups'] += sum(int((s >= 0).sum()) for s in (route.slots or {}).values())
            ids += [self.memory.table_rows(self.memory.rows(route, use_hot), table_set).flatten()
                    for use_hot, table_set in self.reads]
        return torch.unique(torch.cat(ids))

    def prefetch(self, rows, device):
        """Gather the rows of the next step that this step does not read and the hot tier does not hold (their host
        copy is current once the last update's rows have landed) and start their copy to the device; called while
        this step runs."""
        self.flush()
        hot, hot_at = self.hot_positions(rows)
        fresh = ~torch.isin(rows, self.rows_cpu) & ~hot
        host = rows[fresh]
        parts = [t[host] for t in (self.table.weight, self.exp_avg, self.exp_avg_sq)] + [self.row_step[host]]
        if device.type == 'cuda':
            parts = [p.pin_memory() for p in parts]
            with torch.cuda.stream(self.side_stream(device)):
                parts = [p.to(device, non_blocking=True) for p in parts]
        else:
            parts = [p.to(device) for p in parts]
        self.counters['bytes_in'] += sum(p.numel() * p.element_size() for p in parts)
        self.next = (rows, fresh, hot, hot_at, parts)

    def advance(self, device):
        """Stage the prefetched step: hot rows from the resident hot tier, the rows this step also read from its
        updated device copy, the others from the prefetch. Must follow this step's update (update())."""
        rows, fresh, hot, hot_at, parts = self.next
        shared = ~fresh & ~hot
        if self.stream is not None:
            torch.cuda.current_stream(device).wait_stream(self.stream)
        w, m, v, t = (torch.empty((len(rows), *p.shape[1:]), dtype=p.dtype, device=device) for p in parts)
        # positions as indices made on the CPU: a boolean mask on the device would sync it
        at_fresh, at_shared, at_hot = (i.nonzero().squeeze(1).to(device) for i in (fresh, shared, hot))
        for dst, p in zip((w, m, v, t), parts):
            dst[at_fresh] = p
        hot_at = hot_at.to(device)
        for dst, src in zip((w, m, v, t), self.resident(device)):
            dst[at_hot] = src[hot_at]
        if self.table.rows is not None:
            src_at = torch.searchsorted(self.table.rows, rows[shared].to(device))
            for dst, src in zip((w, m, v, t), (self.table.staged.detach(), *self.staged_moments)):
                dst[at_shared] = src[src_at]
        self.table.rows, self.table.staged, self.staged_moments = rows.to(device), w.requires_grad_(), (m, v, t)
        self.rows_cpu = rows
        self.counters['steps'] += 1
        self.counters['rows_staged'] += len(rows)
        self.counters['rows_shared'] += int(shared.sum())
        self.counters['rows_hot'] += int(hot.sum())
        self.next = None

    @torch.no_grad()
    def update(self, lr, weight_decay, betas, eps=1e-8):
        """Row-wise AdamW on the staged rows with a nonzero gradient, on the device; written back to the resident hot
        tier (hot rows) and started back to host memory (the others: they land there at the next flush())."""
        grad = self.table.staged.grad
        if grad is None:
            return
        self.flush()                    # one write-back in flight at a time (the prefetch has landed it already)
        sel = updated_rows(grad)
        m, v, t = self.staged_moments
        w, m_new, v_new, t_new = adamw_rows(self.table.staged.detach()[sel], grad[sel], m[sel], v[sel], t[sel],
                                            lr, weight_decay, betas[0], betas[1], eps)
        self.table.staged.detach()[sel], m[sel], v[sel], t[sel] = w, m_new, v_new, t_new
        host = self.table.rows[sel].cpu()
        hot, hot_at = self.hot_positions(host)
        at_hot, at_cold = (i.nonzero().squeeze(1).to(w.device) for i in (hot, ~hot))
        hot_at, cold_rows = hot_at.to(w.device), host[~hot]
        for dst, src in zip(self.resident(w.device), (w, m_new, v_new, t_new)):
            dst[hot_at] = src[at_hot]
        self.hot_changed |= len(hot_at) > 0
        cold = [src[at_cold] for src in (w, m_new, v_new, t_new)]
        self.pending = (cold_rows, *self.to_host(cold))
        self.counters['bytes_out'] += sum(p.numel() * p.element_size() for p in cold)
        self.counters['rows_updated'] += len(sel)
        self.updates += 1
        self.table.staged.grad = None

    def to_host(self, parts):
        """Device tensors copied to host memory without waiting: on CUDA into pinned memory on the side stream (after
        the update's kernels), with the event that marks the copy done; elsewhere the copies themselves."""
        if not parts[0].is_cuda:
            return [p.cpu() for p in parts], None
        stream = self.side_stream(parts[0].device)
        stream.wait_stream(torch.cuda.current_stream(parts[0].device))
        with torch.cuda.stream(stream):
            out = [torch.empty(p.shape, dtype=p.dtype, pin_memory=True).copy_(p, non_blocking=True) for p in parts]
            for p in parts:            # the gathered rows were made on the compute stream: kept until the copy is done
                p.record_stream(stream)
        return out, stream.record_event()

    # -- checkpoints: the optimizer state in the layout of table_optimizer='rowwise' on the device ----------------

    def optimizer_state(self, optimizer):
        """optimizer.state_dict() with the table's group and state appended, as RowwiseAdamW on the device keeps
        them (the table's param last): a checkpoint of either mode resumes in the other."""
        sd = optimizer.state_dict()
        n = sum(len(g['params']) for g in sd['param_groups'])
        group = {**sd['param_groups'][0], 'params': [n], 'rowwise': True}
        state = {'exp_avg': self.exp_avg, 'exp_avg_sq': self.exp_avg_sq, 'row_step': self.row_step,
                 'step': torch.tensor(float(self.updates))}
        return {'state': {**sd['state'], n: state}, 'param_groups': [*sd['param_groups'], group]}

    def load_optimizer_state(self, optimizer, sd):
        """The inverse of optimizer_state: the table's state into host memory, the rest into the optimizer."""
        table_group = next((g for g in sd['param_groups'] if g.get('rowwise')), None)
        if table_group is None:
            raise ValueError("the checkpoint's optimizer has no row-wise table state (it was trained with "
                             "--table_optimizer='adamw'); host tables need --table_optimizer='rowwise' from the start")
        (n,) = table_group['params']
        st = sd['state'].get(n)
        if st:
            for dst, k in ((self.exp_avg, 'exp_avg'), (self.exp_avg_sq, 'exp_avg_sq'), (self.row_step, 'row_step')):
                dst.copy_(st[k])
            self.updates = int(st['step'])
        self.hot, self.hot_changed = None, False     # placed again from host memory at the next advance()
        optimizer.load_state_dict({'state': {k: v for k, v in sd['state'].items() if k != n},
                                   'param_groups': [g for g in sd['param_groups'] if g is not table_group]})


def cpu_copy_without_table(memory):
    """The memory module's row function (buffers, variants) on the CPU, without its table."""
    table = memory._modules.pop('table')
    try:
        return copy.deepcopy(memory).cpu()
    finally:
        memory._modules['table'] = table
