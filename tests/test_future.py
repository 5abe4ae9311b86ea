"""The paper's open questions (§6.3, §7.2): each mechanism does what its config says."""
import collections
import glob
import json
import os

import numpy as np
import pytest
import torch

import optim
import train
from configurator import apply_config
from conftest import ROOT, run
from data import HotTier, TokenData, load_meta
from engram import ID_BITS
from test_model import tiny_model
from test_train import micro_config


def batch(gen_data, split='train', starts=(0, 40)):
    data = TokenData(gen_data, 2)
    return tuple(torch.from_numpy(a) for a in data.windows(split, np.array(starts), 32))

def test_every_config_loads_and_validates(monkeypatch):
    monkeypatch.chdir(ROOT)                     # configs exec() their parents by relative path, as train.py is run
    files = sorted(glob.glob('configs/*.py') + glob.glob('configs/*/*.py'))
    assert len(files) >= 40
    for f in files:
        cfg = {k: getattr(train, k) for k in train.config_keys}
        changed = apply_config(cfg, [f], train.config_keys)
        assert changed, f"{f} sets nothing"
        train.model_config(cfg, 50304).validate()


def test_membership_only_hashes_hot_rows_with_nines_layout(gen_data):
    x, y, c = batch(gen_data)
    mphf, hashed = tiny_model(gen_data, 'nine'), tiny_model(gen_data, 'nine', hot_index='hashed')
    assert mphf.param_counts() == hashed.param_counts()
    route = hashed.index(torch.cat([c, x], 1), 2)
    rows = hashed.memory.rows(route)[..., :2]                         # order 2, K=2 heads
    hot = route.slots[2] >= 0
    per_head = hashed.memory.heads(route.keys[2], 0, 2, 200)
    assert torch.equal(rows[hot], per_head[hot] * 2 + torch.arange(2))   # hashed hot row of each head
    assert torch.equal(rows[~hot], mphf.memory.rows(route)[..., :2][~hot])
    assert (per_head[hot][:, 0] != per_head[hot][:, 1]).any()        # the heads index independently

def test_controlled_collisions_share_hot_rows(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', hot_collision=4)
    assert m.memory.hot_rows == 50 and m.param_counts()['tables'] == 2 * (50 * 2 + 2 * 257) * 8
    route = m.index(torch.cat([c, x], 1), 2)
    rows = m.memory.rows(route)[..., :2]
    hot = route.slots[2] >= 0
    assert torch.equal(rows[hot], (route.slots[2][hot] % 50)[:, None] * 2 + torch.arange(2))


def test_decoupled_keys_route_by_is_hot(gen_data):
    x, y, c = batch(gen_data, 'val', (0, 32))
    m = tiny_model(gen_data, 'hash', gate_keys='decoupled')
    _, _, info = m(x, y, prev=c, diag=True)
    with torch.no_grad():
        for b in m.transformer.h:
            if b.engram is not None:
                b.engram.w_k_cold.weight.mul_(3.0)
    _, _, info2 = m(x, y, prev=c, diag=True)
    hot = info['is_hot'].any(0)
    a1, a2 = info['alpha'][0], info2['alpha'][0]                       # first Engram layer: same input h
    assert torch.equal(a1[hot], a2[hot]) and not torch.equal(a1[~hot], a2[~hot])

def test_wk_decay_and_reset(gen_data):
    m = tiny_model(gen_data, 'nine', gate_keys='decoupled')
    w = m.transformer.h[1].engram.w_k.weight.clone()
    w_cold = m.transformer.h[1].engram.w_k_cold.weight.clone()
    optim.gate_maintenance(m, 5, 1e-3, wk_decay=0.1)
    assert torch.allclose(m.transformer.h[1].engram.w_k.weight, 0.9 * w)
    assert torch.allclose(m.transformer.h[1].engram.w_k_cold.weight, 0.9 * w_cold)
    optim.gate_maintenance(m, 9, 1e-3, wk_reset_interval=10)
    assert torch.allclose(m.transformer.h[1].engram.w_k.weight, 0.9 * w)      # not a reset iter
    optim.gate_maintenance(m, 10, 1e-3, wk_reset_interval=10)
    new = m.transformer.h[1].engram.w_k.weight
    assert not torch.allclose(new, 0.9 * w) and abs(new.std().item() - 0.02) < 0.005


def test_gate_features_are_the_data(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', gate_inputs=('is_hot', 'log_freq', 'collision'))
    from model import ForwardPass
    from variants import gate_features
    route = m.index(torch.cat([c, x], 1), 2)
    keys, slots = route.keys, route.slots
    is_hot = torch.stack([slots[2] >= 0, slots[3] >= 0]).any(0)
    rows = m.memory.rows(route)
    f = gate_features(m.config.gate_inputs, ForwardPass(m, x, route, None))
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
    assert (more.transformer.h[1].engram.w_feat.weight == 0).all()
    state = {k: v for k, v in more.state_dict().items() if 'w_feat' not in k}
    plain.load_state_dict(state)
    assert torch.equal(plain(x, y, prev=c)[1], more(x, y, prev=c)[1])


def test_per_layer_hot_strategy_reads_cold_rows_in_other_layers(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', hot_layers=(1,))
    seen = {}
    for i in (1, 2):
        m.transformer.h[i].engram.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, args[1]))
    m(x, y, prev=c)
    route = m.index(torch.cat([c, x], 1), 2)
    assert torch.equal(seen[1], m.memory(m.memory.rows(route)))
    assert torch.equal(seen[2], m.memory(m.memory.rows(route, use_hot=False)))
    assert not torch.equal(seen[1], seen[2])


def test_per_layer_tables_are_read_by_their_own_layer(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', engram_shared_tables=False)
    seen = {}
    for i in (1, 2):
        m.transformer.h[i].engram.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, args[1]))
    m(x, y, prev=c)
    rows = m.memory.rows(m.index(torch.cat([c, x], 1), 2))
    n = m.memory.rows_per_set
    assert m.memory.table.weight.shape[0] == 2 * n
    assert torch.equal(seen[1], m.memory.table.weight[rows].flatten(-2))
    assert torch.equal(seen[2], m.memory.table.weight[rows + n].flatten(-2))


def test_hot_dropout_drops_only_hot_rows_and_only_in_training(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', hot_dropout=0.5)
    from model import ForwardPass
    route = m.index(torch.cat([c, x], 1), 2)
    slots = route.slots
    ref = m.memory(m.memory.rows(route))
    torch.manual_seed(0)
    e = m.memory_vector(ForwardPass(m, x, route, None), 1)
    hot = torch.stack([slots[2] >= 0, slots[3] >= 0], -1)
    ev, rv = e.view(2, 32, 2, -1), ref.view(2, 32, 2, -1)
    dropped = (ev == 0).all(-1)
    assert torch.equal(ev[~hot], rv[~hot]) and (dropped <= hot).all()
    assert 0.3 < dropped[hot].float().mean() < 0.7 and torch.allclose(ev[hot & ~dropped], 2 * rv[hot & ~dropped])
    m.eval()
    assert torch.equal(m.memory_vector(ForwardPass(m, x, route, None), 1), ref)

def test_hot_weight_decay_touches_only_hot_rows(gen_data):
    m = tiny_model(gen_data, 'nine')
    w = m.memory.table.weight.detach().clone()
    optim.gate_maintenance(m, 1, 0.5, hot_weight_decay=0.2)
    mask = optim.hot_row_mask(m.memory)
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


def test_key_stability_uses_each_layers_own_memory_read(tmp_path, gen_data):
    """With per-layer tables and layer 2 cold-only, the keys compared are W_K of the memory vector each
    layer really reads: checked against a direct computation from the tables."""
    import eval_stratified as es
    from checkpoint import CKPT_VERSION, save_checkpoint
    from data import save_json
    opts = dict(engram_shared_tables=False, hot_layers=(1,))
    snaps = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = tiny_model(gen_data, 'nine', **opts)
        with torch.no_grad():
            m.memory.table.weight.normal_()
        snaps.append(m)
        save_checkpoint(str(tmp_path / 'snapshots' / f'iter_{seed:06d}.pt'),
                        {'format_version': CKPT_VERSION, 'iter_num': seed, 'model': m.state_dict(), 'model_args': vars(m.config)})
    save_json(str(tmp_path / 'config.json'), {'data_dir': gen_data, 'val_windows': 2})
    rep = es.key_stability(str(tmp_path))
    x, y, c = batch(gen_data, 'val', (0, 32))
    route = snaps[0].index(torch.cat([c, x], 1), 2)
    @torch.no_grad()
    def key(m, layer, table_set, use_hot):
        e = m.memory(m.memory.rows(route, use_hot), table_set)
        return torch.nn.functional.normalize(m.transformer.h[layer].engram.w_k(e), dim=-1)
    hot = route.is_hot
    for layer, table_set, use_hot in ((1, 0, True), (2, 1, False)):
        cos = (key(snaps[0], layer, table_set, use_hot) * key(snaps[1], layer, table_set, use_hot)).sum(-1)
        got = rep['pairs'][0]['layers'][f'L{layer}']
        assert got['cos_hot'] == pytest.approx(float(cos[hot].mean()), abs=1e-6)
        assert got['cos_cold'] == pytest.approx(float(cos[~hot].mean()), abs=1e-6)
