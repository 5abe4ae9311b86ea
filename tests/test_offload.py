"""engram_tables='host' (engramlib/offload.py): the tables in host memory, each step's rows staged, the same run as the
row-wise optimizer with the tables on the device — byte for byte on a CPU, where host and device coincide."""
import json
import os
import random
import sys

import pytest
import torch

from conftest import run, run_killing
from test_train import micro_config, rows, weights

HOST = ["--engram_tables='host'", "--table_optimizer='rowwise'"]
# a small clip: the global norm is above it at every step, so the clip acts and the table's rows count in the norm
SETTINGS = dict(table_optimizer='rowwise', grad_clip=0.05, max_iters=6, lr_decay_iters=6, eval_interval=3, log_interval=1)


def same_run(a, b):
    assert rows(a, 'eval') == rows(b, 'eval') and rows(a, 'train') == rows(b, 'train')
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize('memory, variants', [('hash', {}), ('nine', {}),
                                              ('nine', dict(engram_shared_tables=False, hot_layers=(2,), hot_dropout=0.2))])
def test_host_tables_give_the_device_run_byte_for_byte_and_stage_rows(tmp_path, gen_data, memory, variants):
    """Hash, Nine, and Nine with the variants that change which tables a layer reads (per-layer tables, hot
    layers) or drop hot rows: the same run with the tables in host memory, Nine's hot tier resident on the device
    (an eval or a checkpoint that read host memory without its hot rows back would differ)."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, memory=memory, **SETTINGS, **variants)
    dev, host = tmp_path / 'device', tmp_path / 'host'
    run(['train.py', cfg_path, f"--out_dir='{dev}'"])
    run(['train.py', cfg_path, f"--out_dir='{host}'", *HOST])
    same_run(dev, host)
    counters = json.load(open(host / 'summary.json'))['host_tables']
    assert counters['steps'] == 6 + 1           # every step staged (+ the step after the last: prefetched ahead)
    assert counters['rows_updated'] > 0 and counters['rows_shared'] > 0 and counters['bytes_in'] > 0
    table = weights(host)['memory.table.weight']
    assert counters['rows_staged'] < 7 * table.shape[0]      # a step stages the rows it reads, not the table
    # Nine's hot tier stays on the device: its rows never come from the host (weight, 2 moments, step: 3d + 1 floats)
    assert (counters['rows_hot'] > 0) == (memory == 'nine')
    from_host = counters['rows_staged'] - counters['rows_shared'] - counters['rows_hot']
    assert counters['bytes_in'] == from_host * (3 * table.shape[1] + 1) * 4


def test_the_clip_acts_and_the_device_rowwise_clip_counts_the_table(tmp_path, gen_data):
    """The byte-for-byte test above means something only if clipping acts: with a clip that never binds the run
    differs. And the row-wise clip on the device counts the table: it scales every gradient, the table's too, as
    the dense clip over all parameters does (the same norm, summed in another order)."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, memory='hash', **SETTINGS)
    run(['train.py', cfg_path, f"--out_dir='{tmp_path / 'a'}'"])
    run(['train.py', cfg_path, f"--out_dir='{tmp_path / 'b'}'", '--grad_clip=1000.0'])
    assert rows(tmp_path / 'a', 'eval') != rows(tmp_path / 'b', 'eval')
    from engramlib.offload import DeviceTables
    from test_model import tiny_model
    grads = {}
    for optimizer in ('rowwise', 'adamw'):
        torch.manual_seed(0)
        model = tiny_model(gen_data, 'hash')
        x = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0))
        model(x, x, prev=torch.zeros(2, 2, dtype=torch.long))[1].backward()
        norm = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None]))
        DeviceTables(optimizer).clip(model, model, norm / 4)
        grads[optimizer] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads['rowwise'].keys() == grads['adamw'].keys() and 'memory.table.weight' in grads['adamw']
    for n, g in grads['rowwise'].items():
        assert torch.allclose(g, grads['adamw'][n], rtol=1e-5, atol=1e-9), n


def test_a_row_updated_at_step_t_and_read_at_t_plus_1_arrives_updated(gen_data):
    """Two consecutive batches that share rows: the staged copy of step t+1 holds step t's update of the shared
    rows, and the host copy holds it too once the write-back lands (at the next prefetch or sync, not in update: the
    loop does not wait on it); rows step t did not read come from the host."""
    from engramlib.offload import HostTables
    from test_model import tiny_model
    model = tiny_model(gen_data, 'hash')
    tables = HostTables(model, pin=False)
    dev = torch.device('cpu')
    x = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0))
    prev = torch.zeros(2, 2, dtype=torch.long)
    both = tables.step_rows([(x, prev)])
    tables.prefetch(both, dev)
    tables.advance(dev)
    model.train()
    model(x, x, prev=prev)[1].backward()
    before = tables.table.weight[both].clone()
    tables.update(1e-2, 0.0, (0.9, 0.95))
    assert torch.equal(before, tables.table.weight[both])   # on its way back: host memory not written yet
    tables.sync()
    updated = tables.table.weight[both]
    assert not torch.equal(before, updated)                  # step t changed its rows on the host
    x2 = torch.cat([x[:, :4], torch.randint(50, 60, (2, 4), generator=torch.Generator().manual_seed(1))], 1)   # half the tokens of step t again
    nxt = tables.step_rows([(x2, prev)])
    tables.table.weight[nxt] = -7.0      # were the host copy read for a shared row (stale order), it would show -7
    shared = torch.isin(nxt, both)
    tables.prefetch(nxt, dev)
    tables.table.weight[nxt[shared]] = updated[torch.searchsorted(both, nxt[shared])]   # restore the shared rows
    tables.advance(dev)
    staged = tables.table.staged.detach()
    assert shared.any() and (~shared).any()
    assert torch.equal(staged[shared], updated[torch.searchsorted(both, nxt[shared])])
    assert (staged[~shared] == -7.0).all()                   # the others: from the host, as prefetched
    assert tables.counters['rows_shared'] == int(shared.sum())


def test_host_tables_resume_exactly_after_kill_9(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, memory='nine', **{**SETTINGS, 'max_iters': 12, 'lr_decay_iters': 12,
                                                                       'eval_interval': 2})
    ref = tmp_path / 'ref'
    run(['train.py', cfg_path, f"--out_dir='{ref}'", *HOST])
    out = str(tmp_path / 'killed')
    log = os.path.join(out, 'metrics.jsonl')
    lines = lambda p: sum(1 for _ in open(p)) if os.path.exists(p) else 0
    def command():
        resume = os.path.exists(os.path.join(out, 'ckpt.pt'))
        return [sys.executable, 'train.py', cfg_path, f"--out_dir='{out}'", *HOST] + (
            ["--init_from='resume'"] if resume else ['--overwrite=True'])
    def started():
        target = (lines(log) if os.path.exists(os.path.join(out, 'ckpt.pt')) else 0) + rng.randint(3, 6)
        return lambda: lines(log) >= target
    rng = random.Random(0)
    assert run_killing(command, started, rng, 2, lambda r: r.uniform(0, 0.08), 300) >= 1
    same_run(ref, out)


@pytest.mark.parametrize('first, then', [('device', 'host'), ('host', 'device')])
def test_a_checkpoint_of_either_mode_resumes_in_the_other(tmp_path, gen_data, first, then):
    """With dropout on: the resume restores the random state in both modes."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, memory='nine', dropout=0.1, **SETTINGS)
    ref = tmp_path / 'ref'
    run(['train.py', cfg_path, f"--out_dir='{ref}'"])
    out = tmp_path / 'switched'
    run(['train.py', cfg_path, f"--out_dir='{out}'", '--max_iters=3', f"--engram_tables='{first}'"])
    run(['train.py', cfg_path, f"--out_dir='{out}'", "--init_from='resume'", f"--engram_tables='{then}'"])
    same_run(ref, out)


@pytest.mark.parametrize('args, message', [
    (["--engram_tables='host'"], "set --table_optimizer='rowwise'"),
    (HOST + ["--memory='none'"], "--memory='none' has none"),
    (HOST + ['--hot_teacher=0.1'], "--hot_teacher read or decay table rows beyond each step's own reads"),
    (HOST + ['--hot_weight_decay=0.1'], "--hot_weight_decay read or decay"),
    (HOST + ['--table_size=4000000000'], "of them in the host tables"),        # counted as host memory, before allocating
])
def test_host_tables_refuse_what_they_cannot_do_in_one_line(tmp_path, gen_data, args, message):
    cfg_path, cfg = micro_config(tmp_path, gen_data)
    p = run(['train.py', cfg_path, *args], check=False)
    assert p.returncode == 1 and p.stderr.startswith('error: ') and message in p.stderr and len(p.stderr.splitlines()) == 1


def test_host_tables_refuse_ddp(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data)
    p = run(['train.py', cfg_path, *HOST], check=False, env={**os.environ, 'WORLD_SIZE': '2'})
    assert p.returncode == 1 and 'not shared between DDP ranks' in p.stderr and len(p.stderr.splitlines()) == 1


def test_bench_offload_preset_times_host_beside_device_tables(tmp_path):
    """bench.py --preset offload at tiny shapes (CPU): every config timed in one run, the host tables' counters
    per step; no speed is asserted (bench.py measures, tests do not)."""
    out = tmp_path / 'bench.json'
    run(['bench.py', '--preset', 'offload', '--rounds', '1', '--steps', '1', '--device', 'cpu', '--out', str(out)])
    tr = json.load(open(out))['offload']
    assert set(tr['ratio_host_over_device_step_time']) == {'hash', 'nine'}
    for m in ('hash_host', 'nine_host'):
        h = tr[m]['host_tables']
        assert h['rows_staged_per_step'] > 0 and h['bytes_in_per_step'] > 0 and h['rows_updated_per_step'] > 0
    assert tr['nine_host']['host_tables']['hot_lookup_share'] > 0 == tr['hash_host']['host_tables']['hot_lookup_share']
