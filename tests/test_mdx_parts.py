"""MD-mix model parts (issue 17): each kind's defining property, its parameter accounting, and the paper's
model bit-identical with the part off."""
import math

import numpy as np
import pytest
import torch

from engramlib.data import TokenData
from extensions.mdx import embeddings
from factory import ModelConfig
from model import GPT
from test_model import tiny_model


def batch(gen_data, starts=(0, 40)):
    data = TokenData(gen_data, 2)
    return tuple(torch.from_numpy(a) for a in data.windows('train', np.array(starts), 32))


# -- token embeddings ------------------------------------------------------------

def test_embedding_kinds_count_their_own_parameters():
    V, C = 448, 32
    counts = {e: GPT(ModelConfig.from_args(vocab_size=V, n_layer=1, n_head=2, n_embd=C, block_size=16, memory='none', embedding=e,
                               embed_rank=4, embed_tables=2, embed_buckets=64)).param_counts() for e in ('tied', 'untied', 'lowrank', 'mihe')}
    assert counts['tied']['embedding'] == 0 and counts['untied']['embedding'] == V * C
    assert counts['lowrank']['embedding'] == V * 4 + 4 * C and counts['mihe']['embedding'] == 2 * 64 * C // 2
    for e, c in counts.items():
        assert c['head'] == V * C and c['total'] - counts['tied']['total'] == c['embedding'], e

def test_mihe_reads_one_row_per_table_at_the_hashed_index(gen_data):
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'nine', embedding='mihe', embed_tables=2, embed_buckets=64)
    rows = embeddings.token_rows(448, 2, 64, 'mdmix')
    W = m.transformer.wte.table.weight
    expect = torch.cat([W[rows[x, 0]], W[64 + rows[x, 1]]], -1)
    assert torch.equal(m.transformer.wte(x), expect)
    assert rows.min() >= 0 and rows.max() < 64 and not torch.equal(rows[:, 0], rows[:, 1])   # salts decorrelate the tables
    mul = embeddings.token_rows(448, 2, 64, 'mulxor')
    assert not torch.equal(mul, rows)
    assert torch.equal(embeddings.token_rows(448, 2, 64, 'mdmix', seed=1), embeddings.token_rows(448, 2, 64, 'mdmix', seed=1))
    assert not torch.equal(embeddings.token_rows(448, 2, 64, 'mdmix', seed=1), rows)

def test_mihe_full_collisions_match_the_expectation():
    for kind in ('mdmix', 'mulxor'):
        rows = embeddings.token_rows(50304, 2, 2048, kind)
        pairs, expected = embeddings.full_collisions(rows, 2048)
        assert expected == pytest.approx(math.comb(50304, 2) / 2048 ** 2)
        assert abs(pairs - expected) < 4 * math.sqrt(expected), (kind, pairs, expected)   # ~Poisson(302)

def test_lowrank_embedding_is_a_product_of_two_factors(gen_data):
    x, _, _ = batch(gen_data)
    m = tiny_model(gen_data, 'hash', embedding='lowrank', embed_rank=4)
    e = m.transformer.wte
    assert torch.allclose(e(x), e.codes.weight[x] @ e.up.weight.T, atol=1e-6)

def test_untied_embedding_is_not_the_head(gen_data):
    m = tiny_model(gen_data, 'hash', embedding='untied')
    assert m.transformer.wte.weight.data_ptr() != m.lm_head.weight.data_ptr()
    tied = tiny_model(gen_data, 'hash')
    assert tied.transformer.wte.weight is tied.lm_head.weight


# -- mixture of experts ----------------------------------------------------------

def moe_model(gen_data, **kw):
    return tiny_model(gen_data, 'hash', ffn='moe', **kw)

def reference_moe(moe, x, expert, scale=None):
    """Token by token: its expert's MLP, zero past the expert's capacity (tokens in order)."""
    E, xf = moe.E, x.reshape(-1, x.shape[-1])
    cap = math.ceil(moe.capacity * len(xf) / E)
    seen, out = [0] * E, []
    for t, e in enumerate(expert.tolist()):
        H = moe.w_fc.shape[-1]
        h = torch.nn.functional.gelu(xf[t] @ moe.w_fc[e] + moe.b_fc[e * H:(e + 1) * H])
        y = h @ moe.w_proj[e] + moe.b_proj[e * len(xf[t]):(e + 1) * len(xf[t])]
        out.append(y * (scale[t] if scale is not None else 1) if seen[e] < cap else torch.zeros_like(y))
        seen[e] += 1
    return torch.stack(out).view_as(x)

@pytest.mark.parametrize('router', ['hash', 'switch'])
def test_moe_dispatch_equals_running_each_tokens_expert(gen_data, router):
    from model import ForwardPass
    x_ids, _, _ = batch(gen_data)
    m = moe_model(gen_data, moe_router=router, moe_capacity=0.6)        # small capacity: some tokens dropped
    moe = m.transformer.h[0].mlp
    with torch.no_grad():
        for p in (moe.b_fc, moe.b_proj):
            p.normal_()
    x = torch.randn(2, 32, 32)
    fwd = ForwardPass(m, x_ids, None, None)
    expert, scale = moe.route(x.view(-1, 32), fwd)
    y = moe(x, fwd)
    assert moe.dropped > 0
    assert torch.allclose(y, reference_moe(moe, x, expert, scale), atol=1e-5)

def test_hash_routing_is_a_function_of_the_token_id_only(gen_data):
    from extensions.mdx.hash_moe import hashed_experts
    from model import ForwardPass
    m = moe_model(gen_data)
    moe0, moe1 = m.transformer.h[0].mlp, m.transformer.h[1].mlp
    ids = torch.randint(0, 448, (2, 32))
    e = moe0.route(torch.randn(64, 32), ForwardPass(m, ids, None, None))[0]
    assert torch.equal(e, hashed_experts(448, 4, 0, 1)[ids.flatten(), 0])
    assert torch.equal(e, moe0.route(torch.randn(64, 32), ForwardPass(m, ids, None, None))[0])   # not the hidden state
    assert not torch.equal(moe0.candidates, moe1.candidates)          # a salt per layer

def test_balanced_assignment_evens_the_unigram_mass(gen_data):
    from engramlib.data import load_counts, load_meta
    m = moe_model(gen_data, moe_router='balanced')
    u = m.index.unigram.double()
    keys, cnt = load_counts(gen_data, load_meta(gen_data), 3, 'rawgrams')
    assert u.sum() == cnt.sum()                                       # every train token once
    shares = lambda e: torch.stack([u[e == k].sum() for k in range(4)]) / u.sum()
    balanced, hashed = shares(m.transformer.h[0].mlp.candidates[:, 0]), shares(moe_model(gen_data).transformer.h[0].mlp.candidates[:, 0])
    assert balanced.max() - balanced.min() <= u.max() / u.sum() + 1e-9  # LPT: within one token's mass
    assert balanced.max() < hashed.max()

def test_load_bias_moves_toward_balance_and_picks_the_candidate(gen_data):
    from model import ForwardPass
    m = moe_model(gen_data, moe_choices=2, moe_bias_rate=0.1)
    moe = m.transformer.h[0].mlp
    ids = torch.arange(64).view(2, 32)
    cand = moe.candidates[ids.flatten()]
    with torch.no_grad():
        moe.load_bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    e = moe.route(torch.randn(64, 32), ForwardPass(m, ids, None, None))[0]
    assert torch.equal(e, cand.max(-1).values)                        # the highest bias = the highest label here
    m.train()
    before = moe.load_bias.clone()
    moe(torch.randn(2, 32, 32), ForwardPass(m, ids, None, None))
    load = moe.load
    step = 0.1 * torch.sign(load.mean() - load)
    assert torch.allclose(moe.load_bias - before, step) and (step != 0).all()
    m.eval()
    moe(torch.randn(2, 32, 32), ForwardPass(m, ids, None, None))
    assert torch.allclose(moe.load_bias - before, step)                # no update in eval

def test_moe_has_the_dense_mlps_active_parameters(gen_data):
    dense, moe = tiny_model(gen_data, 'hash'), moe_model(gen_data)
    mlp = sum(p.numel() for p in dense.transformer.h[0].mlp.parameters())
    assert sum(p.numel() for p in moe.transformer.h[0].mlp.parameters()) == 4 * mlp
    switch = moe_model(gen_data, moe_router='switch')
    assert sum(p.numel() for p in switch.transformer.h[0].mlp.parameters()) == 4 * mlp + 32 * 4


# -- product-key memory ----------------------------------------------------------

def test_product_keys_find_the_exact_top_k_of_all_slots(gen_data):
    m = tiny_model(gen_data, 'none', ffn='pkm', pkm_layers=(1,), pkm_subkeys=16, pkm_key_dim=8, pkm_topk=4)
    pkm = m.transformer.h[1].mlp.pkm
    assert m.transformer.h[0].mlp.pkm is None and m.transformer.h[2].mlp.pkm is None
    x = torch.randn(2, 5, 32)
    q = pkm.query(x).unflatten(-1, (2, -1))
    s1, s2 = (torch.einsum('btd,nd->btn', q[..., g, :], pkm.subkeys[g]) for g in (0, 1))
    full = (s1[..., :, None] + s2[..., None, :]).flatten(-2)             # all n^2 slots
    best, slots = full.topk(4, dim=-1)
    expect = (pkm.values(slots) * torch.softmax(best, -1).unsqueeze(-1)).sum(-2)
    assert torch.allclose(pkm(x), expect, atol=1e-6)

def test_seeded_subkeys_are_fixed_codes_and_learned_ones_are_parameters(gen_data):
    from extensions.mdx.pkm import seeded_codes
    kw = dict(ffn='pkm', pkm_layers=(1, 2), pkm_subkeys=16, pkm_key_dim=8, pkm_topk=4)
    seeded, learned = tiny_model(gen_data, 'none', **kw), tiny_model(gen_data, 'none', pkm_keys='learned', **kw)
    a, b = seeded.transformer.h[1].mlp.pkm, seeded.transformer.h[2].mlp.pkm
    assert torch.equal(a.subkeys, seeded_codes(16, 8, 1)) and set((a.subkeys * 8 ** 0.5).round().unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(a.subkeys, b.subkeys)                        # a seed per layer
    assert learned.param_counts()['total'] - seeded.param_counts()['total'] == 2 * (2 * 16 * 8)
    assert torch.equal(learned.transformer.h[1].mlp.pkm.subkeys.detach(), a.subkeys)   # the same start


# -- learned seeds (straight-through) -------------------------------------------

def test_learned_seeds_forward_the_argmax_seed_and_train_the_logits(gen_data):
    x, y, c = batch(gen_data)
    kw = dict(embedding='mihe', embed_buckets=64)
    m = tiny_model(gen_data, 'hash', embed_seed_choices=3, **kw)
    emb = m.transformer.wte
    with torch.no_grad():
        emb.seed_logits.copy_(torch.tensor([0., 2., 0., 1., 0., 0.]))    # table 0 -> seed 1, table 1 -> seed 0
    W = emb.table.weight
    expect = torch.cat([W[embeddings.token_rows(448, 2, 64, 'mdmix', 1)[x, 0]],
                        W[64 + embeddings.token_rows(448, 2, 64, 'mdmix', 0)[x, 1]]], -1)
    assert torch.allclose(emb(x), expect, atol=1e-7)                   # the hard choice in value
    m(x, y, prev=c)[1].backward()
    assert emb.seed_logits.grad.abs().sum() > 0                        # the softmax's gradient
    one = tiny_model(gen_data, 'hash', **kw)
    assert one.transformer.wte.seed_logits is None and one.param_counts()['embedding'] == 2 * 64 * 16

def test_seed_gradient_check_compares_estimate_and_real_change(gen_data):
    """Every (table, other seed) pair: the estimate is the straight-through gradient's difference dL/dw_s - dL/dw_c,
    the change the loss's real change at that seed, and the agreement the share of pairs whose signs agree (each
    recomputed here from its definition)."""
    x, y, c = batch(gen_data)
    m = tiny_model(gen_data, 'hash', embedding='mihe', embed_buckets=64, embed_seed_choices=3)
    rows, agree = embeddings.seed_gradient_check(m, x, y, c)
    current = m.transformer.wte.seed_weights().argmax(-1)
    assert [(r['table'], r['from'], r['to']) for r in rows] == [(j, int(current[j]), s) for j in range(2) for s in range(3)
                                                                  if s != int(current[j])]
    w = torch.nn.functional.one_hot(current, 3).float().requires_grad_()
    m.eval()
    base = embeddings.forward_with_seed_weights(m, x, y, c, w)
    base.backward()
    for r in rows:
        assert r['estimate'] == pytest.approx(float(w.grad[r['table'], r['to']] - w.grad[r['table'], r['from']]), rel=1e-5)
        moved = w.detach().clone()
        moved[r['table']] = torch.eye(3)[r['to']]
        with torch.no_grad():
            assert r['change'] == pytest.approx(float(embeddings.forward_with_seed_weights(m, x, y, c, moved) - base), abs=1e-6)
    assert agree == sum((r['estimate'] > 0) == (r['change'] > 0) for r in rows) / len(rows)
    assert all(r['estimate'] != 0 and r['change'] != 0 for r in rows)     # no pair agrees by being zero


# -- attention sketches and bounds (issue 18, parts 3 and 4) ----------------------

def test_count_sketch_estimates_inner_products_without_bias():
    from extensions.mdx.attention_sketch import count_sketch
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    est = torch.stack([count_sketch(q, 4, s) @ count_sketch(k, 4, s) for s in range(0, 4000, 2)])
    assert abs(float(est.mean() - q @ k)) < 4 * float(est.std()) / len(est) ** 0.5    # unbiased
    assert torch.allclose(count_sketch(q + k, 4, 7), count_sketch(q, 4, 7) + count_sketch(k, 4, 7))   # linear
    assert float(est.std()) > 0.1                                       # a width-4 sketch of 16 dims is noisy

def test_sketch_pruning_keeping_everything_is_exact_attention():
    from extensions.mdx.attention_sketch import sketch_pruned
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(n, 16, generator=g) for n in (8, 200, 200))
    full = sketch_pruned(q, k, v, 8, float('inf'))
    assert full['kept_share'] == 1 and full['dropped_mass'] == 0 and full['rel_error'] < 1e-6
    some = sketch_pruned(q, k, v, 8, 1.0)
    assert some['kept_share'] < 1 and some['dropped_mass'] > 0

def test_bucket_bound_holds_on_every_dropped_bucket():
    from extensions.mdx.attention_sketch import bucket_bounded
    g = torch.Generator().manual_seed(2)
    centers = torch.randn(16, 16, generator=g) * 2                      # clustered keys: tight buckets
    k = centers[torch.arange(512) % 16] + 0.05 * torch.randn(512, 16, generator=g)
    q, v = centers[:4].repeat(8, 1) + 0.05 * torch.randn(32, 16, generator=g), torch.randn(512, 16, generator=g)
    none = bucket_bounded(q, k, v, 32, 0.0)
    assert none['dropped_buckets'] == 0 and none['rel_error'] < 1e-6
    kept = []
    for tau in (1e-4, 1e-2, 1.0):
        r = bucket_bounded(q, k, v, 32, tau)
        assert r['bound_holds'] and r['dropped_buckets'] > 0
        kept.append(r['kept_share'])
    assert kept == sorted(kept, reverse=True)


def test_parts_switched_off_leave_the_model_bit_identical(gen_data):
    """With embedding='tied' and ffn='mlp' the parts' own settings change nothing: same parameters, same
    initial weights, same loss to the bit."""
    x, y, c = batch(gen_data)
    plain = tiny_model(gen_data, 'nine')
    knobs = tiny_model(gen_data, 'nine', embed_rank=3, embed_tables=4, embed_buckets=64, embed_hash='mulxor', embed_seed_choices=3,
                       moe_experts=8, moe_router='switch', moe_choices=2, moe_bias_rate=0.5, pkm_layers=(1,), pkm_keys='learned',
                       pkm_subkeys=16, pkm_topk=2, lsh_bucket_size=4, lsh_rounds=3, lsh_window=2, sketch_width=2,
                       sketch_tau=0.1, bucket_count=3, bucket_tau=0.5)
    assert plain.param_counts() == knobs.param_counts()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), knobs.state_dict().values()))
    assert torch.equal(plain(x, y, prev=c)[1], knobs(x, y, prev=c)[1])
