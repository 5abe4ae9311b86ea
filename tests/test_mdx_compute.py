"""MD-mix compute parts (issue 18): reversible coupling blocks (exact inverse, gradients equal to storing
every activation, flat activation memory in depth) and the attention kinds (LSH: causal attention with one
bucket, the exact softmax over the pairs it met; sketch / bucket kernels: causal attention when nothing is
pruned, and their pruning used when it is on)."""
import functools

import pytest
import torch
import torch.nn.functional as F

from extensions.mdx import attention_lsh, attention_sketch, reversible
from layers import NO_NOISE
from mdmix import Noise
from configurator import ConfigError
from factory import ModelConfig
from model import GPT, ForwardPass
from test_mdx_parts import batch
from test_model import tiny_model


def twin(model):
    """The same reversible blocks run with plain autograd, every activation stored."""
    model.stack = functools.partial(reversible.RevBlock.stack, reversible=False)
    return model

def forward_pass(model, x, c):
    """A ForwardPass with the Engram layers' memory vectors, to run blocks by hand."""
    fwd = ForwardPass(model, x, model.route(x, c, False), NO_NOISE)
    fwd.memory = {l: model.memory_vector(fwd, l) for l in model.engram_layers}
    return fwd

def grads(model, x, y, c, seed=1):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)                  # the dropout masks
    loss = model(x, y, prev=c)[1]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# -- reversible blocks -----------------------------------------------------------

def test_reversible_blocks_invert_their_output_and_bf16_weights_drift(gen_data):
    """In fp32 the inverse is exact up to fp32 rounding. Under bf16 autocast the stream stays fp32, but F and
    G re-run on a rebuilt input that may differ in its last fp32 bit, which can flip a bf16 rounding of their
    output. With the stream itself in bf16 every subtraction rounds: the drift the Reformer's users met.
    (The bf16 model has no Engram memory: the gate keeps its norms in fp32.)"""
    x, y, c = batch(gen_data)
    errors = {}
    for kind in ('fp32', 'autocast', 'bf16'):
        model = tiny_model(gen_data, 'none' if kind == 'bf16' else 'nine', block='reversible')
        dtype = torch.bfloat16 if kind == 'bf16' else torch.float32
        fwd = forward_pass(model.to(dtype), x, c)
        h = torch.randn(2, 32, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=kind == 'autocast'):
            x1, x2 = h, h + 0.5
            for block in model.transformer.h:
                x1, x2, _ = block(x1, x2, fwd)
            for block in reversed(model.transformer.h):
                x1, x2 = block.inverse(x1, x2, fwd)
        errors[kind] = max(float((x1 - h).abs().max()), float((x2 - h - 0.5).abs().max()))
    assert errors['fp32'] < 1e-5 and errors['autocast'] < 1e-3
    assert errors['bf16'] > 100 * max(errors['fp32'], errors['autocast']) and errors['bf16'] < 0.1

def test_reversible_stack_passes_a_float64_gradcheck():
    """Input and every parameter, float64 end to end (so without Engram memory: the gate's norms run in fp32;
    the Engram layers are checked against the twin below)."""
    torch.manual_seed(0)
    model = GPT(ModelConfig.from_args(vocab_size=64, n_layer=2, n_head=2, n_embd=8, block_size=8, block='reversible', memory='none')).double()
    fwd = ForwardPass(model, torch.zeros(1, 6, dtype=torch.long), None, NO_NOISE)
    fwd.memory = {}
    blocks = model.transformer.h
    h = torch.randn(1, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: reversible.RevStack.apply(blocks, fwd, 0, *t), (h, *blocks.parameters()), fast_mode=True)

@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_reversible_gradients_equal_the_twin_that_stores_activations(gen_data, dtype):
    """With dropout and MD-mix noise on, so the recompute must replay the RNG and the noise."""
    x, y, c = batch(gen_data)
    noise = Noise({'emb': 0.1, 'q': 0.1, 'k': 0.1, 'mem': 0.1}, mem_scope='all', max_iters=10)
    model = tiny_model(gen_data, 'nine', noise=noise, block='reversible', dropout=0.1, hot_dropout=0.2)
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16'):
        loss, g = grads(model, x, y, c)
        loss_twin, g_twin = grads(twin(model), x, y, c)
    assert torch.equal(loss, loss_twin)
    assert g.keys() == g_twin.keys() and 'memory.table.weight' in g
    tol = 1e-5 if dtype == 'float32' else 1e-2     # bf16: a rebuilt input can flip a bf16 rounding (2.3e-3 seen)
    for n in g:
        assert torch.allclose(g[n], g_twin[n], rtol=tol, atol=tol * float(g_twin[n].abs().max())), n
    loss_other, g_other = grads(model, x, y, c, seed=2)     # another dropout draw: another gradient
    assert not torch.equal(g_other['transformer.h.0.parts.attn.c_attn.weight'], g_twin['transformer.h.0.parts.attn.c_attn.weight'])

def test_reversible_backward_recomputes_under_the_forwards_autocast(gen_data):
    x, y, c = batch(gen_data)
    model = tiny_model(gen_data, 'nine', block='reversible')
    seen = []
    for m in model.transformer.h.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = model(x, y, prev=c)[1]
    n_forward = len(seen)
    loss.backward()                                    # outside autocast, as train.py does
    assert len(seen) == 2 * n_forward and set(seen) == {torch.bfloat16}

def test_reversible_activation_memory_is_flat_in_depth_and_the_twins_grows(gen_data):
    x, y, c = batch(gen_data)
    saved = {}
    for n_layer in (2, 4, 8):
        for kind in ('reversible', 'twin'):
            torch.manual_seed(0)
            model = GPT(ModelConfig.from_args(vocab_size=448, n_layer=n_layer, n_head=2, n_embd=32, block_size=32, block='reversible', memory='none'))
            model = twin(model) if kind == 'twin' else model
            saved[kind, n_layer] = reversible.saved_activation_bytes(lambda: model(x, y)[1], model.parameters())[1]
    assert saved['reversible', 2] == saved['reversible', 4] == saved['reversible', 8]
    per_layer = saved['twin', 4] - saved['twin', 2]
    assert per_layer > 0 and saved['twin', 8] - saved['twin', 4] == 2 * per_layer      # linear in depth
    assert saved['reversible', 8] < saved['twin', 2]

def test_reversible_samples_like_its_training_forward(gen_data):
    x, y, c = batch(gen_data)
    model = tiny_model(gen_data, 'nine', block='reversible').eval()
    with torch.no_grad():
        logits = model(x[:1, :8], x[:1, 1:9], prev=c[:1])[0]
    out = []
    model.generate(x[:1, :8], 1, temperature=0, logits_out=out)
    n = model.index.pad_token
    assert torch.allclose(out[0][0, :n], logits[0, -1, :n], atol=1e-5)

@pytest.mark.parametrize('opts', [dict(ffn='moe'), dict(memory='nine', gate_credit=0.1)])
def test_reversible_refuses_the_parts_a_recompute_would_run_twice(opts):
    with pytest.raises(ConfigError, match="block='reversible'"):
        ModelConfig.from_args(block='reversible', **opts).validate()


# -- MD-banded LSH attention -----------------------------------------------------

def qkv(T=100, d=16, seed=0, clustered=False):
    g = torch.Generator().manual_seed(seed)
    if not clustered:
        return tuple(torch.randn(2, 3, T, d, generator=g) for _ in range(3))
    centers = torch.randn(8, d, generator=g) * 3
    pick = lambda: centers[torch.randint(0, 8, (2, 3, T), generator=g)] + 0.3 * torch.randn(2, 3, T, d, generator=g)
    return pick(), pick(), torch.randn(2, 3, T, d, generator=g)

@pytest.mark.parametrize('c, w', [(128, 8), (100, 1), (300, 16)])
def test_lsh_with_one_bucket_is_causal_attention(c, w):
    q, k, v = qkv()
    y = attention_lsh.lsh_attention(q, k, v, torch.randn(2, 16, 4), c, w)[0]
    assert torch.allclose(y, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)

def test_lsh_is_the_exact_softmax_over_the_causal_pairs_it_met_each_once():
    q, k, v = qkv()
    y, found = attention_lsh.lsh_attention(q, k, v, torch.randn(3, 16, 4), 16, 8, pairs=True)
    met = attention_lsh.attended(100, 8, found)
    assert not met.triu(1).any()                                         # causal
    share = float(met.float().sum() / (100 * 101 / 2 * 6))
    assert 0.1 < share < 0.6                                             # a part of the causal pairs, more than the window
    s = (q @ k.transpose(-1, -2) / 4).masked_fill(~met, float('-inf'))
    assert torch.allclose(y, torch.softmax(s, -1) @ v, atol=1e-6)       # a pair met twice would weigh double

def recall(q, k, met, top=8):
    s = (q @ k.transpose(-1, -2)).masked_fill(torch.ones_like(met).triu(1), float('-inf'))
    idx = s[..., top:, :].topk(top, -1).indices                          # rows with >= top past keys
    return float(met[..., top:, :].gather(-1, idx).float().mean())

def test_lsh_finds_similar_keys_and_more_rounds_find_more():
    q, k, v = qkv(T=256, clustered=True)
    proj = torch.randn(4, 16, 8)
    met = {r: attention_lsh.attended(256, 8, attention_lsh.lsh_attention(q, k, v, proj[:r], 32, 8, pairs=True)[1])
           for r in (1, 2, 4)}
    assert bool((met[1] <= met[2]).all() and (met[2] <= met[4]).all())  # the rounds' pairs only add up
    r = {n: recall(q, k, m) for n, m in met.items()}
    share = float(met[4].float().mean() / (257 / 512))
    assert r[1] < r[2] < r[4] and r[4] > 0.8 and r[4] > 1.5 * share    # the top keys, far more than a random share

def test_lsh_model_trains(gen_data):
    x, y, c = batch(gen_data)
    model = tiny_model(gen_data, 'nine', attention='lsh', lsh_bucket_size=8, lsh_window=4)
    plain = tiny_model(gen_data, 'nine')
    loss = model(x, y, prev=c)[1]
    loss.backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad.abs().sum() > 0
    assert all(p.grad.isfinite().all() for p in model.parameters() if p.grad is not None)   # empty rounds weigh 0
    assert not torch.equal(loss, plain(x, y, prev=c)[1])                 # the option is used

@pytest.mark.parametrize('kind', ['lsh', 'sketch', 'bucket'])
def test_window_attention_kinds_refuse_a_kv_cache_and_sample_without_one(gen_data, kind):
    x, y, c = batch(gen_data)
    model = tiny_model(gen_data, 'nine', attention=kind).eval()
    with pytest.raises(NotImplementedError, match='--no_cache'):
        model.generate(x[:1, :4], 2)
    assert model.generate(x[:1, :4], 2, use_cache=False).shape == (1, 6)


# -- sketch-pruned and bucket-bounded attention as model kinds --------------------

@pytest.mark.parametrize('kind, everything, pruned', [('sketch', dict(sketch_tau=float('inf')), dict(sketch_tau=0.0)),
                                                      ('bucket', dict(bucket_tau=0.0), dict(bucket_tau=0.5))])
def test_attention_kernels_are_causal_attention_until_they_prune(gen_data, kind, everything, pruned):
    x, y, c = batch(gen_data)
    plain = tiny_model(gen_data, 'nine')(x, y, prev=c)[1]
    assert torch.allclose(tiny_model(gen_data, 'nine', attention=kind, **everything)(x, y, prev=c)[1], plain, atol=1e-5)
    assert abs(float((tiny_model(gen_data, 'nine', attention=kind, **pruned)(x, y, prev=c)[1] - plain).detach())) > 1e-4

def test_causal_bucket_statistics_of_the_last_query_are_those_of_all_keys():
    q, k, v = (t[0, 0] for t in qkv(T=64))
    b = attention_sketch.key_buckets(k, 8)
    causal = attention_sketch.causal_bucket_stats(k, v, b, 8)
    full = attention_sketch.bucket_stats(k, v, b, 8)
    for a, f in zip(causal, full):
        assert torch.allclose(a[-1], f[0], atol=1e-5)
    assert torch.equal(causal[0][0], torch.nn.functional.one_hot(b[0], 8).float())   # the first query sees one key

def test_causal_bucket_bound_holds_for_every_query():
    q, k, v = (t[0, 0] for t in qkv(T=64, clustered=True))
    b = attention_sketch.key_buckets(k, 8)
    visible = attention_sketch.causal(64, 'cpu')
    keep, bound, drop = attention_sketch.bucket_keep(q, k, b, attention_sketch.causal_bucket_stats(k, v, b, 8), 0.05, visible)
    p = torch.softmax((q @ k.T / 4).masked_fill(~visible, float('-inf')), -1)
    contribution = torch.stack([(p * (b == j)) @ v for j in range(8)], 1).norm(dim=-1)
    assert drop.any() and bool((contribution[drop] <= bound[drop] * (1 + 1e-5)).all())
    assert not (keep & ~visible).any()
