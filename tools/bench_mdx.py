"""
python bench.py --preset mdx --ckpt <run>/ckpt.pt: the MD-mix notes' inference ideas (extensions/mdx/) timed on a
trained checkpoint's real activations, each beside the standard way.
"""
import time

import numpy as np
import torch

from factory import ModelConfig, build_model

def time_mdx(ckpt_path, device, n_pos=2048):
    """The MD-mix inference ideas on a trained checkpoint's real activations (issue 19), each beside the
    standard way: the bounded logit short-circuit vs the dense head, content-defined KV reuse vs a full
    prefill, seeded vs k-means PQ codes for attention keys, Count-Sketch LoRA vs LoRA step time, and the attention
    work that sketches (idea A) and bucket bounds (idea B) skip, with the error against full attention."""
    from factory import load_model
    from engramlib.data import TokenData
    model, ckpt, data_dir, meta = load_model(ckpt_path)
    model.to(device)
    T = model.config.block_size
    data = TokenData(data_dir, model.index.max_order - 1)
    x, y, p = (torch.from_numpy(a).to(device) for a in data.windows('val', data.val_starts(T, -(-n_pos // T)), T))
    hs, qs = [], []
    hooks = [model.transformer.ln_f.register_forward_hook(lambda m, a, o: hs.append(o.flatten(0, 1))),
             model.transformer.h[-1].attn.c_attn.register_forward_hook(lambda m, a, o: qs.append(o.detach()))]   # q | k | v
    with torch.no_grad():
        model(x, y, prev=p)
    for h in hooks:
        h.remove()
    H, W = hs[0][:n_pos].float(), model.lm_head.weight.float()
    out = {'checkpoint': ckpt_path, 'positions': len(H), 'vocab': W.shape[0]}

    nh, C = model.config.n_head, model.config.n_embd
    Q, K, V = (qs[0][..., i * C:(i + 1) * C].flatten(0, 1).float().view(-1, nh, C // nh) for i in (0, 1, 2))
    K, Q, V = K[:4096], Q[:512], V[:4096]
    out.update(mdx_logit_bound(H, W))
    out.update(mdx_kv_reuse(model, x, T, device))
    out.update(mdx_pq_keys(Q, K))
    out.update(mdx_cs_lora(model, x, y, p, device))
    out.update(mdx_attention(Q, K, V))
    return out

def timed(fn, reps=3):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        r = fn()
    return (time.perf_counter() - t0) / reps, r

def mdx_logit_bound(H, W):
    """1. the bounded logit short-circuit (exact top-k), per position, vs the dense matmul + topk."""
    from extensions.mdx import logit_bound
    out = {}
    dense_t, (dv, di) = timed(lambda: torch.topk(H @ W.T, 10, -1))
    for buckets in ('norm', 'mdmix'):
        head = logit_bound.BoundedHead(W, 256, buckets)
        t0 = time.perf_counter()
        res = [head.topk(h, 10) for h in H[:256]]
        per_pos = (time.perf_counter() - t0) / 256
        exact = all(torch.allclose(v, dv[i], atol=1e-5) for i, (v, _, _) in enumerate(res))
        out[f'logit_bound_{buckets}'] = {'rows_read_share': float(np.mean([r for _, _, r in res])) / W.shape[0], 'exact_top10': exact,
                                          'us_per_position': per_pos * 1e6, 'dense_us_per_position_batched': dense_t / len(H) * 1e6}
    one_t, _ = timed(lambda: torch.topk(W @ H[0], 10), reps=50)
    out['dense_us_one_position'] = one_t * 1e6
    return out

def mdx_kv_reuse(model, x, T, device):
    """2. content-defined KV reuse: 4 shared prefixes x 8 suffixes, time to first token with and without."""
    from extensions.mdx.kv_reuse import PrefixKVCache
    out = {}
    prefix_len, suffix_len = T * 5 // 8, T // 4
    toks = x.flatten()
    prompts = [torch.cat([toks[i * 97: i * 97 + prefix_len], toks[2000 + 37 * j: 2000 + 37 * j + suffix_len]])[None]
               for i in range(4) for j in range(8)]
    cache, full_t, reuse_t, reused, err = PrefixKVCache(model), [], [], 0, 0.0
    with torch.no_grad():
        for pr in prompts:
            t0 = time.perf_counter(); ref = model(pr, prev=model.context(pr, 0))[0]; full_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); got, _, r = cache.prefill(pr); reuse_t.append(time.perf_counter() - t0)
            reused += r
            err = max(err, (got[:, -1] - ref[:, -1]).abs().max().item())
    out['kv_reuse_tiny'] = {'prompts': len(prompts), 'prompt_tokens': prefix_len + suffix_len, 'reused_share': reused / (len(prompts) * (prefix_len + suffix_len)),
                       'ttft_ms_full': 1e3 * float(np.median(full_t)), 'ttft_ms_reuse': 1e3 * float(np.median(reuse_t)), 'max_abs_logit_diff': err}
    # ... and on GPT-2 small (random weights: only the time matters), 768 shared + 256 own tokens per prompt
    big = build_model(ModelConfig.from_args(vocab_size=50304, memory='none'), None).to(device).eval()
    cache, full_t, reuse_t, err, reused = PrefixKVCache(big), [], [], 0.0, 0
    gen = torch.Generator().manual_seed(0)
    prefixes = [torch.randint(0, 50257, (768,), generator=gen) for _ in range(2)]
    with torch.no_grad():
        for i in range(8):
            pr = torch.cat([prefixes[i % 2], torch.randint(0, 50257, (256,), generator=gen)])[None].to(device)
            t0 = time.perf_counter(); ref = big(pr)[0]; full_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); got, _, r = cache.prefill(pr); reuse_t.append(time.perf_counter() - t0)
            err, reused = max(err, (got[:, -1] - ref[:, -1]).abs().max().item()), reused + r
    out['kv_reuse_gpt2_small'] = {'prompts': 8, 'prompt_tokens': 1024, 'reused_share': reused / (8 * 1024), 'ttft_ms_full': 1e3 * float(np.median(full_t)),
                                  'ttft_ms_reuse_hits': 1e3 * float(np.median(reuse_t[2:])), 'ttft_ms_first_use': 1e3 * float(np.mean(reuse_t[:2])),
                                  'max_abs_logit_diff': err}
    return out

def mdx_pq_keys(Q, K):
    """3. PQ codes for the last layer's attention keys, per head: recall@10 of each query's true top-10 keys."""
    from extensions.mdx import pq_keys
    out, nh, d = {}, K.shape[1], K.shape[-1]
    for M in (2, 4):
        rec = {'seeded': [], 'kmeans': []}
        for hd in range(nh):
            k, q = K[:, hd].contiguous(), Q[:, hd].contiguous()
            for name, cb in (('seeded', pq_keys.seeded_codebooks(d, M, 256, seed=hd, scale=pq_keys.subspace_scale(k, M), device=k.device)),
                             ('kmeans', pq_keys.kmeans_codebooks(k, M, 256))):
                rec[name].append(pq_keys.recall_at_k(q, k, pq_keys.decode(pq_keys.encode(k, cb), cb), 10))
        out[f'pq_M{M}'] = {'recall@10_seeded': float(np.mean(rec['seeded'])), 'recall@10_kmeans': float(np.mean(rec['kmeans'])),
                           'bytes_per_key': M, 'bytes_per_key_bf16': 2 * d}
    return out

def mdx_cs_lora(model, x, y, p, device):
    """4. Count-Sketch LoRA vs LoRA: one fine-tune step (adapters only) at equal trainable parameters."""
    from extensions.mdx import cs_lora
    out = {}
    for kind in ('lora', 'cslora'):
        m = build_model(ModelConfig.from_args(**{**model.config.args(), 'adapter': kind, 'adapter_rank': 8}), model.index).to(device)
        for q in m.parameters():
            q.requires_grad_(False)
        params = cs_lora.adapter_parameters(m)
        for q in params:
            q.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=1e-3)
        def step():
            loss = m(x[:8], y[:8], prev=p[:8])[1]
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        out[f'{kind}_step_ms'] = timed(step)[0] * 1e3
        out[f'{kind}_params'] = sum(q.numel() for q in params)
    return out

def mdx_attention(Q, K, V):
    """5. attention work skipped by sketches (idea A) and by bucket bounds (idea B), the last layer's keys of
    every validation position pooled as one cache per head (the decode setting), against full softmax."""
    from extensions.mdx import attention_sketch as sk
    out, nh = {}, K.shape[1]
    heads = [(Q[:, hd].contiguous(), K[:, hd].contiguous(), V[:, hd].contiguous()) for hd in range(nh)]
    mean = lambda rs: {key: float(np.mean([r[key] for r in rs])) for key in ('kept_share', 'dropped_mass', 'rel_error')}
    out['sketch_pruned'] = [{'width': r, 'tau': tau, **mean([sk.sketch_pruned(*h, r, tau, salt=hd) for hd, h in enumerate(heads)])}
                            for r in (4, 8) for tau in (2.0, 4.0, 8.0)]
    out['bucket_bounded'] = []
    for tau in (1e-4, 1e-2, 1.0):
        rs = [sk.bucket_bounded(*h, 64, tau, salt=hd) for hd, h in enumerate(heads)]
        out['bucket_bounded'].append({'buckets': 64, 'tau': tau, **mean(rs), 'bound_holds': all(r['bound_holds'] for r in rs)})
    return out
