"""The paper's open questions (§6.3, §7.2): each mechanism does what its config says."""
import collections
import glob
import json
import os

import numpy as np
import pytest
import torch

from engramlib import optim
import factory
import train
from configurator import apply_config
from conftest import ROOT, run
from engramlib.data import HotTier, TokenData, load_meta
from engram import ID_BITS
from test_model import tiny_model
from test_train import micro_config


def batch(gen_data, split='train', starts=(0, 40)):
    data = TokenData(gen_data, 2)
    return tuple(torch.from_numpy(a) for a in data.windows(split, np.array(starts), 32))

def test_every_config_loads_and_validates(monkeypatch):
    monkeypatch.chdir(ROOT)                     # the relative paths below, as a user runs train.py
    files = sorted(glob.glob('configs/*.py') + glob.glob('configs/*/*.py'))
    assert len(files) >= 40
    for f in files:
        cfg = train.default_config()
        changed = apply_config(cfg, [f], train.config_keys)
        assert changed, f"{f} sets nothing"
        factory.model_config(cfg, 50304).validate()


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
    from extensions.variants import gate_features
    route = m.index(torch.cat([c, x], 1), 2)
    keys, slots = route.keys, route.slots
    is_hot = torch.stack([slots[2] >= 0, slots[3] >= 0]).any(0)
    rows = m.memory.rows(route)
    f = gate_features(m.config.variants.gate_inputs, ForwardPass(m, x, route, None))
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

def test_hot_weight_decay_touches_only_hot_rows_without_a_host_sync(gen_data):
    m = tiny_model(gen_data, 'nine')
    w = m.memory.table.weight.detach().clone()
    optim.gate_maintenance(m, 1, 0.5, hot_weight_decay=0.2)
    mem = m.memory
    per_order = mem.rows_per_set // len(mem.orders)
    mask = torch.arange(mem.table.weight.shape[0]) % per_order < mem.hot_rows * mem.K     # each order's block starts hot
    assert mask.sum() == 2 * 200 * 2
    assert torch.equal(mem.table.weight[mask], w[mask] * (1 - 0.5 * 0.2)) and torch.equal(mem.table.weight[~mask], w[~mask])
    torch._dynamo.reset()                 # a data-dependent shape (mask indexing, nonzero) would break the graph
    explained = torch._dynamo.explain(lambda: optim.gate_maintenance(m, 1, 0.5, hot_weight_decay=0.2))()
    assert explained.graph_break_count == 0 and explained.graph_count == 1


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
    from report import stability as es
    from model import GPT
    seen, forward = [], GPT.forward
    def recording(self, x, *a, **k):
        seen.append(x.shape[0])
        return forward(self, x, *a, **k)
    GPT.forward = recording
    try:
        small = es.key_stability(cfg['out_dir'], batch_size=3)          # 16 windows in batches of 3
    finally:
        GPT.forward = forward
    assert max(seen) == 3 and sum(seen) == 2 * 2 * 16                    # 2 pairs x 2 snapshots x 16 windows, never more at once
    for r, s in zip(rep['pairs'], small['pairs']):
        for l in ('L1', 'L2'):
            assert s['layers'][l] == pytest.approx(r['layers'][l], abs=1e-6)


def test_study_runner_trains_skips_and_reports(tmp_path, gen_data):
    cfgs = [micro_config(tmp_path, gen_data, name=f'{m}.py', memory=m, max_iters=4, lr_decay_iters=4)[0] for m in ('hash', 'nine')]
    args = ['study.py', *cfgs, '--seeds=0', f'--out={tmp_path}/runs', f'--report={tmp_path}/rep']
    first = run(args)
    assert first.stdout.count(': training') == 2
    again = run(args)
    assert again.stdout.count('finished, skipped') == 2
    rep = json.load(open(tmp_path / 'rep' / 'report.json'))
    assert set(rep['table3']) == {'hash', 'nine'}


def test_key_stability_uses_each_layers_own_memory_read(tmp_path, gen_data):
    """With per-layer tables and layer 2 cold-only, the keys compared are W_K of the memory vector each
    layer really reads: checked against a direct computation from the tables."""
    from report import stability as es
    from engramlib.checkpoint import CKPT_VERSION, save_checkpoint
    from engramlib.data import save_json
    opts = dict(engram_shared_tables=False, hot_layers=(1,))
    snaps = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = tiny_model(gen_data, 'nine', **opts)
        with torch.no_grad():
            m.memory.table.weight.normal_()
        snaps.append(m)
        save_checkpoint(str(tmp_path / 'snapshots' / f'iter_{seed:06d}.pt'),
                        {'format_version': CKPT_VERSION, 'iter_num': seed, 'model': m.state_dict(), 'model_args': m.config.args(),
                         'config': {'data_dir': gen_data, 'dtype': 'float32', 'eval_batch_size': 2, 'val_windows': 2}, 'data_signature': {}})
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


# -----------------------------------------------------------------------------
# issue 20: beyond the paper

def test_fingerprint_membership_keeps_members_and_passes_2_pow_minus_b_of_the_rest(gen_data):
    """Algorithm 1 as written: every member gets its own slot; a non-member passes the b-bit check (and is
    routed hot, to the slot the emulated MPHF gives it) in about 2^-b of queries."""
    from extensions.variants import fingerprint_and_slot
    exact = tiny_model(gen_data, 'nine')
    keys = torch.from_numpy(np.load(os.path.join(gen_data, 'ngrams_o2_keys.npy'))).long()
    members = exact.index.hot_slots(keys, 2) >= 0
    rng = torch.Generator().manual_seed(0)
    strangers = torch.randint(0, 1 << 42, (200_000,), generator=rng)       # random bigram keys: non-members
    assert (exact.index.hot_slots(strangers, 2) < 0).all()
    for b, lo, hi in ((4, 0.058, 0.067), (16, 0, 1e-4)):
        fp = tiny_model(gen_data, 'nine', hot_fingerprint_bits=b)
        assert torch.equal(fp.index.hot_slots(keys[members], 2), exact.index.hot_slots(keys[members], 2))
        passed = fp.index.hot_slots(strangers, 2)
        assert lo <= (passed >= 0).float().mean() <= hi, b
        hit = passed >= 0                   # a false positive: the slot the emulated MPHF gives it, whose fingerprint it has
        fps, pseudo = fingerprint_and_slot(strangers, 2, b, fp.index.fp_table_o2.numel())
        assert torch.equal(passed[hit], pseudo[hit]) and torch.equal(fp.index.fp_table_o2[pseudo[hit]], fps[hit])
        assert not torch.equal(fp.index.fp_table_o2[pseudo[~hit]], fps[~hit])

def test_fingerprint_analysis_measures_the_false_positive_rate(gen_data):
    from report.databaseline import fingerprint_analysis
    rows = fingerprint_analysis(gen_data, load_meta(gen_data), 200, bits=(2, 16))
    two = [r for r in rows if r['bits'] == 2]
    assert {r['split'] for r in two} == {'train', 'val'}
    for r in two:
        assert 0.15 < r['fp_rate_o3'] < 0.35 and r['expected_fp_rate'] == 0.25
        assert r['hot_coverage_fp'] > r['hot_coverage_exact']
    assert all(r['fp_rate_o2'] < 0.01 for r in rows if r['bits'] == 16)

def kn_brute_force(stream, V, a, b, c, D=0.75):
    """Interpolated Kneser-Ney trigram probability straight from its definition (dictionaries)."""
    tri = collections.Counter(zip(stream, stream[1:], stream[2:]))
    bi_types = {(y, z) for _, y, z in tri}                               # bigrams with a left context
    cont = collections.Counter(z for _, z in bi_types)                   # N1+(. z)
    p1 = (max(cont[c] - D, 0) + D * len(cont) / V) / len(bi_types)
    nb = sum(1 for (y, _) in bi_types for _ in [0] if y == b)           # N1+(b .) over continuation bigrams
    n_dot_b_dot = sum(v for (x, y, z), v in collections.Counter((0, y, z) for _, y, z in tri).items() if y == b)
    n_bc = sum(1 for (x, y, z) in tri if (y, z) == (b, c))
    p2 = p1 if n_dot_b_dot == 0 else (max(n_bc - D, 0) + D * nb * p1) / n_dot_b_dot
    c_ab = sum(v for (x, y, _), v in tri.items() if (x, y) == (a, b))
    if c_ab == 0:
        return p2
    n_ab = sum(1 for (x, y, _) in tri if (x, y) == (a, b))
    return (max(tri[(a, b, c)] - D, 0) + D * n_ab * p2) / c_ab

def test_kneser_ney_matches_its_definition_and_sums_to_one():
    from report.databaseline import KneserNey, pack
    rng = np.random.default_rng(0)
    V = 7
    stream = rng.choice(V - 1, size=400, p=[.4, .2, .15, .1, .1, .05])    # id 6 is never seen
    kn = KneserNey(*np.unique(pack(stream[:-2], stream[1:-1], stream[2:]), return_counts=True), V)
    a, b = np.meshgrid(np.arange(V), np.arange(V), indexing='ij')
    for ai, bi in zip(a.ravel(), b.ravel()):
        p = kn.prob(np.full(V, ai), np.full(V, bi), np.arange(V))
        assert p.sum() == pytest.approx(1.0, abs=1e-9) and (p > 0).all()
    for ai, bi, ci in ((0, 0, 0), (0, 1, 2), (5, 5, 6), (6, 0, 1), (6, 6, 6)):
        assert kn.prob([ai], [bi], [ci])[0] == pytest.approx(kn_brute_force(list(stream), V, ai, bi, ci), rel=1e-12)
    ent, seen = kn.next_token_entropy([0, 6], [1, 6])
    nxt = collections.Counter(z for x, y, z in zip(stream, stream[1:], stream[2:]) if (x, y) == (0, 1))
    p = np.array(list(nxt.values())) / sum(nxt.values())
    assert ent[0] == pytest.approx(-(p * np.log(p)).sum()) and seen[0] == sum(nxt.values())
    assert np.isnan(ent[1]) and seen[1] == 0

def test_prepare_counts_the_raw_trigrams_of_the_train_stream(gen_data):
    from report.databaseline import pack
    from engramlib.data import load_counts
    data = TokenData(gen_data, 2)
    s = np.concatenate([data.prefix['train'], np.asarray(data.splits['train'], np.int64)])   # pads, then train
    keys, counts = np.unique(pack(s[:-2], s[1:-1], s[2:]), return_counts=True)
    got = load_counts(gen_data, load_meta(gen_data), 3, 'rawgrams')
    assert np.array_equal(got[0], keys) and np.array_equal(got[1], counts) and counts.sum() == len(data.splits['train'])

def test_data_baseline_splits_the_same_positions_as_the_model(gen_data):
    from report.databaseline import data_baseline
    m = tiny_model(gen_data, 'nine')
    data = TokenData(gen_data, 2)
    starts = data.val_starts(32, 8)
    out = data_baseline(data, m.index, starts, 32, 448)
    assert out['positions'] == 8 * 32
    hot = out['hot_share']
    assert out['kn_loss'] == pytest.approx(hot * out['kn_loss_hot'] + (1 - hot) * out['kn_loss_cold'])
    assert out['context_seen_share_hot'] > out['context_seen_share_cold'] and 0 < out['kn_loss'] < np.log(448)

def test_trajectories_are_norms_drifts_and_cosines_of_the_rows():
    from report import stability as es
    torch.manual_seed(0)
    v = [torch.randn(5, 6) for _ in range(3)]
    t = es.trajectories([(10 * i, {'hot': x}) for i, x in enumerate(v)])['hot']
    assert [r['iter'] for r in t] == [0, 10, 20] and t[0]['drift'] is None
    assert t[1]['norm'] == pytest.approx(float(v[1].norm(dim=1).mean()))
    assert t[2]['drift'] == pytest.approx(float((v[2] - v[1]).norm(dim=1).mean()))
    assert t[0]['cos_to_final'] == pytest.approx(float(torch.nn.functional.cosine_similarity(v[0], v[2]).mean()))
    assert t[2]['cos_to_final'] == pytest.approx(1.0)

def test_trajectory_sample_groups_hot_own_and_colliding_rows(gen_data):
    from report import stability as es
    from engramlib.data import load_counts
    from factory import ModelConfig
    cfg = ModelConfig.from_args(vocab_size=448, n_layer=3, n_head=2, n_embd=32, block_size=32, memory='nine', engram_layers=(1, 2),
                    table_size=3001, hot_size=200, engram_head_dim=8)                  # room for rows of their own
    m = factory.build_model(cfg, factory.load_index(gen_data, load_meta(gen_data), cfg)[0])
    keys, cnt = load_counts(gen_data, load_meta(gen_data), 2)
    groups = es.trajectory_sample(m, (keys, cnt))
    assert set(groups) == {'hot', 'cold_own_rows', 'cold_colliding'}
    hot_rows = m.memory.hot_rows * m.memory.K
    assert (groups['hot'] < hot_rows).all() and (groups['cold_own_rows'] >= hot_rows).all()
    all_rows = m.memory.order_rows(torch.from_numpy(keys).long(), m.index.hot_slots(torch.from_numpy(keys).long(), 2), 0, 2)
    uses = torch.bincount(all_rows.flatten(), minlength=m.memory.rows_per_set)
    assert (uses[groups['cold_own_rows']] == 1).all() and (uses[groups['cold_colliding']] >= 2).all()

def test_hash_seed_from_seed_gives_each_seed_its_own_collisions():
    base = train.default_config()
    same = [factory.model_config({**base, 'seed': s}, 448).engram_hash_seed for s in (0, 1)]
    own = [factory.model_config({**base, 'seed': s, 'hash_seed_from_seed': True}, 448).engram_hash_seed for s in (0, 1)]
    assert same == [0, 0] and own == [0, 1]

def forward_losses(model, x, y, c, step=0):
    model.train()
    return model(x, y, prev=c, step=step, diag=True)

def test_gate_credit_penalizes_alpha_where_the_memory_does_not_help(gen_data):
    x, y, c = batch(gen_data)
    plain, credit = tiny_model(gen_data, 'nine'), tiny_model(gen_data, 'nine', gate_credit=0.5)
    credit.load_state_dict(plain.state_dict())
    _, base, info = forward_losses(plain, x, y, c)
    _, loss, _ = forward_losses(credit, x, y, c)
    off = tiny_model(gen_data, 'nine')
    off.load_state_dict(plain.state_dict())
    with torch.no_grad():
        off.memory.table.weight.zero_()                                  # no memory: a zero read everywhere
    loss_off = forward_losses(off, x, y, c)[2]['loss']
    useless = loss_off <= info['loss']
    assert 0 < useless.float().mean() < 1
    assert float(loss.detach() - base.detach()) == pytest.approx(0.5 * float((info['alpha'] * useless).mean()), rel=1e-5)
    loss.backward()
    assert credit.transformer.h[1].engram.w_k.weight.grad.abs().sum() > 0
    credit.eval()
    assert torch.equal(credit(x, y, prev=c)[1], plain.eval()(x, y, prev=c)[1])   # a training loss only

def test_hot_teacher_trains_only_the_cold_rows_of_hot_ngrams(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', hot_teacher=1.0)
    from extensions.variants import hot_teacher_loss
    from model import ForwardPass
    fwd = ForwardPass(m, x, m.index(torch.cat([c, x], 1), 2), None)
    loss = hot_teacher_loss(fwd)
    loss.backward()
    route = fwd.route
    hot = route.is_hot_order.permute(1, 2, 0)
    cold_rows = m.memory.rows(route, use_hot=False).view(*hot.shape, -1)[hot].unique()
    grad_rows = torch.nonzero(m.memory.table.weight.grad.abs().sum(1)).flatten()
    assert torch.equal(grad_rows, cold_rows)                             # no hot row, no other cold row
    W = m.memory.table.weight.detach()
    e_hot = W[m.memory.rows(route)].flatten(-2).view(*hot.shape, -1)
    e_cold = W[m.memory.rows(route, use_hot=False)].flatten(-2).view(*hot.shape, -1)
    assert float(loss.detach()) == pytest.approx(float((e_cold - e_hot)[hot].pow(2).mean()), rel=1e-5)

def test_hot_phase_in_reads_cold_then_blends_to_hot(gen_data):
    x, y, c = batch(gen_data)
    from model import ForwardPass
    m = tiny_model(gen_data, 'nine', hot_ramp_iters=100)
    route = m.index(torch.cat([c, x], 1), 2)
    hot_read, cold_read = m.memory(m.memory.rows(route)), m.memory(m.memory.rows(route, use_hot=False))
    e = lambda step: m.memory_vector(ForwardPass(m, x, route, None, step=torch.tensor(step)), 1)
    assert torch.allclose(e(0), cold_read) and torch.allclose(e(100), hot_read) and torch.allclose(e(500), hot_read)
    assert torch.allclose(e(25), 0.25 * hot_read + 0.75 * cold_read)
    m.eval()
    assert torch.equal(e(0), hot_read)

def test_hot_regularization_ramps_from_zero(gen_data):
    x, y, c = batch(gen_data)
    from model import ForwardPass
    m = tiny_model(gen_data, 'nine', hot_dropout=0.5, hot_reg_ramp_iters=100)
    route = m.index(torch.cat([c, x], 1), 2)
    ref = m.memory(m.memory.rows(route))
    dropped = lambda step: float((m.memory_vector(ForwardPass(m, x, route, None, step=torch.tensor(step)), 1)
                                  .view(2, 32, 2, -1) == 0).all(-1)[route.is_hot_order.permute(1, 2, 0)].float().mean())
    assert torch.equal(m.memory_vector(ForwardPass(m, x, route, None, step=torch.tensor(0)), 1), ref)
    torch.manual_seed(0)
    assert 0.1 < dropped(40) < 0.3 and 0.35 < dropped(1000) < 0.65
    from extensions import variants
    assert variants.ramp(0, 100) == 0 and variants.ramp(30, 100) == pytest.approx(0.3) and variants.ramp(7, 0) == 1.0

def test_semantic_collisions_share_rows_among_keys_with_the_same_next_token(gen_data):
    sem = tiny_model(gen_data, 'nine', hot_collision=4, hot_collision_mode='semantic')
    rnd = tiny_model(gen_data, 'nine', hot_collision=4)
    assert sem.param_counts() == rnd.param_counts() and sem.memory.hot_rows == 50
    idx = sem.index
    keys, slots = idx.hot_keys_o2, idx.hot_slots_o2
    sem_rows = sem.memory.hot_row(keys, slots, 0, 2).squeeze(-1)
    rnd_rows = rnd.memory.hot_row(keys, slots, 0, 2).squeeze(-1)
    assert torch.bincount(sem_rows).max() == 4 and sem_rows.max() == 49
    k3, c3 = idx.count_keys_o3, idx.count_vals_o3                        # most frequent next token per bigram
    top = {}
    for k, n in zip(k3.tolist(), c3.tolist()):
        ctx = k >> ID_BITS
        if ctx not in top or n > top[ctx][1]:
            top[ctx] = (k & ((1 << ID_BITS) - 1), n)
    nxt = torch.tensor([top.get(k, (-1,))[0] for k in keys.tolist()])
    def agreement(rows):                                                 # share of row-mates with the same top token
        same = [(nxt[rows == r][:, None] == nxt[rows == r][None]).float() for r in rows.unique()]
        return sum(float(s.sum() - len(s)) for s in same) / sum(len(s) * (len(s) - 1) for s in same)
    assert agreement(sem_rows) > 0.9 > agreement(rnd_rows) + 0.2       # 0.907 vs 0.673 on this corpus
