"""The paper's open questions (§6.3, §7.2): each mechanism does what its config says."""
import collections
import glob
import json
import os

import numpy as np
import pytest
import torch

import train
from checkpoint import attach_gate_data
from configurator import apply_config
from conftest import run
from data import HotTier, TokenData, load_meta
from engram import ID_BITS
from test_model import tiny_model
from test_train import micro_config


def batch(gen_data, split='train', starts=(0, 40)):
    data = TokenData(gen_data, 2)
    return tuple(torch.from_numpy(a) for a in data.windows(split, np.array(starts), 32))

def test_every_config_loads_and_validates():
    for f in sorted(glob.glob('configs/*.py') + glob.glob('configs/study/*.py')):
        cfg = {k: getattr(train, k) for k in train.config_keys}
        apply_config(cfg, [f], train.config_keys)
        train.model_config(cfg, 50304).validate()


def test_membership_only_hashes_hot_rows_with_nines_layout(gen_data):
    x, y, c = batch(gen_data)
    mphf, hashed = tiny_model(gen_data, 'nine'), tiny_model(gen_data, 'nine', hot_index='hashed')
    assert mphf.param_counts() == hashed.param_counts()
    keys, slots = hashed.index(torch.cat([c, x], 1), 2)
    rows = hashed.memory.rows(keys, slots)[..., :2]                   # order 2, K=2 heads
    hot = slots[2] >= 0
    per_head = hashed.memory.heads(keys[2], 0, 2, 200)
    assert torch.equal(rows[hot], per_head[hot] * 2 + torch.arange(2))   # hashed hot row of each head
    assert torch.equal(rows[~hot], mphf.memory.rows(keys, slots)[..., :2][~hot])
    assert (per_head[hot][:, 0] != per_head[hot][:, 1]).any()        # the heads index independently

def test_controlled_collisions_share_hot_rows(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', hot_collision=4)
    assert m.memory.hot_rows == 50 and m.param_counts()['tables'] == 2 * (50 * 2 + 2 * 257) * 8
    keys, slots = m.index(torch.cat([c, x], 1), 2)
    rows = m.memory.rows(keys, slots)[..., :2]
    hot = slots[2] >= 0
    assert torch.equal(rows[hot], (slots[2][hot] % 50)[:, None] * 2 + torch.arange(2))


def test_decoupled_keys_route_by_is_hot(gen_data):
    x, y, c = batch(gen_data, 'val', (0, 32))
    m = tiny_model(gen_data, 'hash', gate_keys='decoupled')
    _, _, info = m(x, y, ctx=c, diag=True)
    with torch.no_grad():
        for b in m.transformer.h:
            if b.engram is not None:
                b.engram.w_k_cold.weight.mul_(3.0)
    _, _, info2 = m(x, y, ctx=c, diag=True)
    hot = info['is_hot'].any(0)
    a1, a2 = info['alpha'][0], info2['alpha'][0]                       # first Engram layer: same input h
    assert torch.equal(a1[hot], a2[hot]) and not torch.equal(a1[~hot], a2[~hot])

def test_wk_decay_and_reset(gen_data):
    m = tiny_model(gen_data, 'nine', gate_keys='decoupled')
    w = m.transformer.h[1].engram.w_k.weight.clone()
    m.gate_maintenance(5, 1e-3, wk_decay=0.1)
    assert torch.allclose(m.transformer.h[1].engram.w_k.weight, 0.9 * w)
    m.gate_maintenance(10, 1e-3, wk_reset_interval=10)
    new = m.transformer.h[1].engram.w_k.weight
    assert not torch.allclose(new, 0.9 * w) and abs(new.std().item() - 0.02) < 0.005


def test_gate_features_are_the_data(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', gate_inputs=('is_hot', 'log_freq', 'collision'))
    attach_gate_data(m, gen_data)
    from engram import gate_features
    keys, slots = m.index(torch.cat([c, x], 1), 2)
    is_hot = torch.stack([slots[2] >= 0, slots[3] >= 0]).any(0)
    rows = m.memory.rows(keys, slots)
    f = gate_features(m.config.gate_inputs, is_hot, keys, rows, m.index, m.memory)
    assert f.shape == (2, 32, 1 + 2 + 4)
    assert torch.equal(f[..., 0], is_hot.float())
    counts = dict(zip(*(np.load(os.path.join(gen_data, f'ngrams_o3_{n}.npy')) for n in ('keys', 'counts'))))
    expect = torch.tensor([[np.log1p(counts.get(int(k), 0)) for k in row] for row in keys[3]], dtype=torch.float)
    assert torch.allclose(f[..., 2], expect)
    # collision degree of the row read by order 3, head 0: distinct training 3-grams reading that row
    all3 = torch.from_numpy(np.load(os.path.join(gen_data, 'ngrams_o3_keys.npy')))
    tier = HotTier(gen_data, load_meta(gen_data), 200, 3)
    all_slots = torch.tensor([{int(k): s for s, k in enumerate(tier.slot_keys)}.get(int(k), -1) for k in all3])
    all_rows = m.memory.order_rows(all3, all_slots, 1, 3)[:, 0]
    occ = collections.Counter(all_rows.tolist())
    assert torch.allclose(f[..., 5], torch.tensor([[np.log(max(occ.get(int(r), 0), 1)) for r in row] for row in rows[..., 2]]).float())
    hot_rows = rows[..., 2][slots[3] >= 0]
    assert (f[..., 5][slots[3] >= 0] == 0).all() and len(hot_rows) > 0     # collision-free: degree 1

def test_gate_features_start_switched_off(gen_data):
    x, y, c = batch(gen_data)
    plain = tiny_model(gen_data, 'nine')
    more = tiny_model(gen_data, 'nine', gate_inputs=('is_hot', 'log_freq', 'collision'))
    attach_gate_data(more, gen_data)
    state = {k: v for k, v in more.state_dict().items() if 'w_feat' not in k}
    plain.load_state_dict(state)
    assert torch.equal(plain(x, y, ctx=c)[1], more(x, y, ctx=c)[1])


def test_per_layer_hot_strategy_reads_cold_rows_in_other_layers(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', hot_layers=(1,))
    seen = {}
    for i in (1, 2):
        m.transformer.h[i].engram.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, args[1]))
    m(x, y, ctx=c)
    keys, slots = m.index(torch.cat([c, x], 1), 2)
    assert torch.equal(seen[1], m.memory(m.memory.rows(keys, slots)))
    assert torch.equal(seen[2], m.memory(m.memory.rows(keys, slots, use_hot=False)))
    assert not torch.equal(seen[1], seen[2])


def test_hot_dropout_drops_only_hot_rows_and_only_in_training(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', hot_dropout=0.5)
    keys, slots = m.index(torch.cat([c, x], 1), 2)
    rows = m.memory.rows(keys, slots)
    torch.manual_seed(0)
    e = m.read_memory(rows, slots, None)
    ref = m.memory(rows)
    hot = torch.stack([slots[2] >= 0, slots[3] >= 0], -1)
    ev, rv = e.view(2, 32, 2, -1), ref.view(2, 32, 2, -1)
    dropped = (ev == 0).all(-1)
    assert torch.equal(ev[~hot], rv[~hot]) and (dropped <= hot).all()
    assert 0.3 < dropped[hot].float().mean() < 0.7 and torch.allclose(ev[hot & ~dropped], 2 * rv[hot & ~dropped])
    m.eval()
    assert torch.equal(m.read_memory(rows, slots, None), ref)

def test_hot_weight_decay_touches_only_hot_rows(gen_data):
    m = tiny_model(gen_data, 'nine')
    w = m.memory.table.weight.detach().clone()
    m.gate_maintenance(1, 0.5, hot_weight_decay=0.2)
    mask = m.memory.hot_row_mask()
    assert mask.sum() == 2 * 200 * 2
    assert torch.allclose(m.memory.table.weight[mask], 0.9 * w[mask]) and torch.equal(m.memory.table.weight[~mask], w[~mask])


def test_key_stability_report(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, save_snapshots=True, max_iters=8, lr_decay_iters=8)
    run(['train.py', cfg_path])
    assert len(glob.glob(os.path.join(cfg['out_dir'], 'snapshots', '*.pt'))) == 3
    p = run(['eval_stratified.py', '--key_stability', cfg['out_dir']])
    rep = json.load(open(os.path.join(cfg['out_dir'], 'eval', 'report.json')))
    assert [(r['iter_from'], r['iter_to']) for r in rep['pairs']] == [(0, 4), (4, 8)]
    for r in rep['pairs']:
        for l in ('L1', 'L2'):
            v = r['layers'][l]
            assert -1 <= v['cos_hot'] <= 1 and -1 <= v['corr_alpha_loss'] <= 1 and v['cos_hot'] < 1
    assert 'corr(α, stability)' in p.stdout


def test_study_runner_trains_skips_and_reports(tmp_path, gen_data):
    cfgs = [micro_config(tmp_path, gen_data, name=f'{m}.py', memory=m, max_iters=4, lr_decay_iters=4)[0] for m in ('hash', 'nine')]
    args = ['study.py', *cfgs, '--seeds=0', f'--out={tmp_path}/runs', f'--report={tmp_path}/rep']
    first = run(args)
    assert first.stdout.count('training') == 2
    again = run(args)
    assert again.stdout.count('finished, skipped') == 2
    rep = json.load(open(tmp_path / 'rep' / 'report.json'))
    assert set(rep['table3']) == {'hash', 'nine'}
