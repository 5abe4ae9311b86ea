"""sample.py: the KV cache gives the logits of the plain sliding window at every step, the n-gram context
is carried across steps, and the script samples from any checkpoint the repo makes."""
import numpy as np
import pytest
import torch

from conftest import run
from engramlib.data import TokenData
from model import sample_token
from test_model import tiny_model
from test_train import micro_config


@pytest.mark.parametrize('memory, opts', [('nine', {}), ('hash', {}), ('none', {}),
                                          ('nine', dict(gate_keys='decoupled', engram_short_conv=True, hot_layers=(1,)))])
def test_kv_cache_gives_the_sliding_window_logits_at_every_step(gen_data, memory, opts):
    """Through the end of the window (block_size 32): prefill, 1-token steps, then the sliding window."""
    model = tiny_model(gen_data, memory, **opts).eval()
    prompt = torch.from_numpy(TokenData(gen_data, 2).windows('val', np.array([0, 40]), 32)[0])[:, :20]
    out = {}
    for cache in (True, False):
        logits = []
        out[cache] = model.generate(prompt, 24, temperature=0, use_cache=cache, logits_out=logits), logits
    assert torch.equal(out[True][0], out[False][0])                      # greedy text identical
    assert len(out[True][1]) == 24
    for a, b in zip(out[True][1], out[False][1]):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()

def test_sampling_is_seeded_and_respects_top_k_and_top_p():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    g = lambda: torch.Generator().manual_seed(7)
    assert torch.equal(sample_token(logits, 1.0, generator=g()), sample_token(logits, 1.0, generator=g()))
    top3 = logits.topk(3).indices
    for _ in range(20):
        t = sample_token(logits, 1.0, top_k=3)
        assert all(t[i, 0] in top3[i] for i in range(4))
    p = torch.softmax(logits, -1)
    sp, order = p.sort(-1, descending=True)
    need = (sp.cumsum(-1) - sp < 0.5).sum(-1)                           # tokens needed to reach 0.5
    for _ in range(20):
        t = sample_token(logits, 1.0, top_p=0.5)
        assert all(t[i, 0] in order[i, :need[i]] for i in range(4))
    assert torch.equal(sample_token(logits, 0), logits.argmax(-1, keepdim=True))

def test_sample_script_on_a_trained_checkpoint(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4)
    run(['train.py', cfg_path])
    ckpt = f"{cfg['out_dir']}/ckpt.pt"
    args = ['sample.py', '--ckpt', ckpt, '--start', 'the cat', '--num_samples', '2', '--max_new_tokens', '40', '--seed', '3']
    a, b = run(args), run(args + ['--no_cache'])
    assert a.stdout == b.stdout and a.stdout.count('---------------') == 2 and a.stdout.startswith('the cat')
    assert 'KV cache' in a.stderr and 'no cache' in b.stderr
    (tmp_path / 'p.txt').write_text('and the')
    assert run(['sample.py', '--ckpt', ckpt, '--start', f"FILE:{tmp_path / 'p.txt'}", '--max_new_tokens', '5']).stdout.startswith('and the')
    bad = run(['sample.py', '--ckpt', str(tmp_path / 'nope.pt')], check=False)
    assert bad.returncode == 1 and 'no checkpoint at' in bad.stderr
    import subprocess
    import sys
    from conftest import ROOT
    piped = subprocess.run(f"{sys.executable} sample.py --ckpt {ckpt} --num_samples 50 --max_new_tokens 200 | head -c 1",
                           shell=True, cwd=ROOT, capture_output=True, text=True)   # the reader closes the pipe at once
    assert 'Traceback' not in piped.stderr and 'BrokenPipe' not in piped.stderr, piped.stderr[-2000:]


@pytest.mark.parametrize('buckets', ['norm', 'mdmix'])
def test_bounded_logit_head_is_exactly_the_dense_top_k(tmp_path, gen_data, buckets):
    """On every position of validation windows (a trained model: its head's row norms vary)."""
    from factory import load_model
    from extensions.mdx.logit_bound import BoundedHead
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=12, lr_decay_iters=12)
    run(['train.py', cfg_path])
    model = load_model(f"{cfg['out_dir']}/ckpt.pt")[0]
    hs = []
    model.transformer.ln_f.register_forward_hook(lambda m, a, o: hs.append(o.flatten(0, 1)))
    x, y, c = (torch.from_numpy(a) for a in TokenData(gen_data, 2).windows('val', np.arange(16) * 32, 32))
    with torch.no_grad():
        model(x, y, prev=c)
    W = model.lm_head.weight.detach()
    head = BoundedHead(W, block=32, buckets=buckets)
    rows = []
    for h in hs[0]:
        for k in (1, 5):
            v, i, r = head.topk(h, k)
            dv, di = torch.topk(W @ h, k)
            assert torch.allclose(v, dv, atol=1e-6) and torch.allclose(W[i] @ h, dv, atol=1e-6)   # the true top-k logits
        rows.append(r)
    assert 0 < min(rows) and max(rows) <= W.shape[0]

def test_kv_reuse_gives_the_uncached_logits_and_never_trusts_a_tag_alone(gen_data, monkeypatch):
    from extensions.mdx.kv_reuse import PrefixKVCache
    model = tiny_model(gen_data, 'nine').eval()
    toks = torch.from_numpy(TokenData(gen_data, 2).windows('val', np.arange(8) * 32, 32)[0]).flatten()
    prefixes = [toks[:20], toks[50:70]]
    prompts = [torch.cat([pre, toks[100 + 9 * j:108 + 9 * j]])[None] for pre in prefixes for j in range(3)]
    cache = PrefixKVCache(model, modulus=4)
    reused = []
    with torch.no_grad():
        for pr in prompts:
            got, kv, r = cache.prefill(pr)
            ref = model(pr, prev=model.context(pr, 0))[0]
            assert torch.allclose(got, ref, atol=1e-5) and kv.pos == pr.size(1)
            reused.append(r)
    assert reused[0] == 0 and reused[3] == 0 and min(reused[1:3] + reused[4:]) > 0          # second use of a prefix reuses it
    monkeypatch.setattr(PrefixKVCache, 'tags', lambda self, tokens, bounds: [7] * len(bounds))   # every tag collides
    cache = PrefixKVCache(model, modulus=4)
    with torch.no_grad():
        cache.prefill(prompts[0])
        got, _, r = cache.prefill(prompts[3])                   # same tags, other tokens: nothing reused
        assert r == 0 and torch.allclose(got, model(prompts[3], prev=model.context(prompts[3], 0))[0], atol=1e-5)

def test_pq_codes_seeded_codebooks_and_recall():
    from extensions.mdx import pq_keys
    torch.manual_seed(0)
    keys, q = torch.randn(300, 16), torch.randn(40, 16)
    a = pq_keys.seeded_codebooks(16, 4, 64, seed=3, scale=pq_keys.subspace_scale(keys, 4))
    assert torch.equal(a, pq_keys.seeded_codebooks(16, 4, 64, seed=3, scale=pq_keys.subspace_scale(keys, 4)))
    assert not torch.equal(a, pq_keys.seeded_codebooks(16, 4, 64, seed=4, scale=pq_keys.subspace_scale(keys, 4)))
    codes = pq_keys.encode(keys, a)
    assert codes.shape == (300, 4) and codes.dtype == torch.uint8
    exact_cb = keys[:64].view(64, 4, 4).transpose(0, 1).contiguous()       # codewords = the keys themselves
    assert torch.equal(pq_keys.decode(pq_keys.encode(keys[:64], exact_cb), exact_cb), keys[:64])
    assert pq_keys.recall_at_k(q, keys, keys, 5) == 1.0
    learned = pq_keys.kmeans_codebooks(keys, 4, 64)
    approx = lambda cb: pq_keys.decode(pq_keys.encode(keys, cb), cb)
    assert (approx(learned) - keys).norm() < (approx(a) - keys).norm()      # k-means fits better than noise
