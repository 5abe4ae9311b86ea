"""The real GPU path, where a GPU exists (skipped otherwise; tests/test_gpu_path.py has the CPU stand-ins):
compiled bf16 training of Hash and Nine, fused AdamW, the --ckpt eval, MD5 and MD-mix noise on CUDA,
the vectorized hot lookup on CUDA against bbhash."""
import hashlib
import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')

from conftest import run
from test_train import micro_config, rows


@pytest.mark.parametrize('memory', ['hash', 'nine'])
def test_compiled_bf16_training_and_ckpt_eval(tmp_path, gen_data, memory):
    """train.py on CUDA (bf16, torch.compile, fused AdamW): learns, no recompiles, no fused-kernel
    misses; the --ckpt eval on CUDA equals the train-time eval of the same iter."""
    import eval_stratified as es
    cfg_path, cfg = micro_config(tmp_path, gen_data, memory=memory, max_iters=24, lr_decay_iters=24, eval_interval=8,
                                 device='cuda', dtype='bfloat16', compile=True, noise_mem=0.01, noise_mem_scope='hot')
    p = run(['train.py', cfg_path], env={**os.environ, 'TORCH_LOGS': 'recompiles'})
    assert 'Recompiling' not in p.stderr and 'Cannot dispatch to fused' not in p.stderr, p.stderr[-2000:]
    ev = rows(cfg['out_dir'])
    assert ev[-1]['val_loss'] < ev[0]['val_loss'] - 1.0
    rep = es.evaluate_checkpoint(os.path.join(cfg['out_dir'], 'ckpt.pt'), device='cuda')
    assert rep['metrics']['val_loss'] == pytest.approx(ev[-1]['val_loss'], abs=1e-6)
    assert rep['collisions'] and all(c['slots_used'] > 0 for c in rep['collisions'])

def test_fused_adamw_matches_unfused(gen_data):
    import optim
    from test_model import tiny_model
    models = [tiny_model(gen_data, 'nine').cuda() for _ in range(2)]
    opts = [optim.configure_optimizers(models[0], 0.1, 1e-3, (0.9, 0.95), 'cuda'),
            optim.configure_optimizers(models[1], 0.1, 1e-3, (0.9, 0.95), 'cpu')]     # 'cpu' = unfused
    assert opts[0].defaults.get('fused') and not opts[1].defaults.get('fused')
    for m in models:
        for p in m.parameters():
            p.grad = torch.ones_like(p) * 0.01
    for o in opts:
        o.step()
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.allclose(a, b, atol=1e-6)

def test_md5_on_cuda_equals_hashlib():
    from mdmix import md5
    msgs = [bytes(range(n % 256)) * (1 + n // 256) for n in range(0, 600, 7)]
    assert md5(msgs, device='cuda') == [hashlib.md5(m).digest() for m in msgs]

def test_noise_is_bit_equal_on_cpu_and_cuda():
    from mdmix import gaussian, noise_words, rademacher
    tok = torch.randint(0, 128_000, (4, 256))
    pos = torch.arange(256).expand(4, 256)
    out = {}
    for dev in ('cpu', 'cuda'):
        w1, w2 = noise_words(tok.to(dev), pos.to(dev), 3, torch.tensor(1234, device=dev), 'mem', 64, seed=5)
        out[dev] = (gaussian(w1, w2).cpu(), rademacher(w1).cpu())
    assert torch.equal(out['cpu'][0], out['cuda'][0]) and torch.equal(out['cpu'][1], out['cuda'][1])

def test_hot_lookup_on_cuda_equals_bbhash(gen_data):
    pytest.importorskip('bbhash', reason='the reference MPHF (bbhash) is not installed (a bare GPU image)')
    from checkpoint import load_index
    from data import HotTier, TokenData, load_meta
    from engram import hot_lookup_mphf, ngram_keys
    from model import GPTConfig
    meta = load_meta(gen_data)
    index, _ = load_index(gen_data, meta, GPTConfig(memory='nine', hot_size=200))
    index = index.cuda()
    data = TokenData(gen_data, 2)
    stream = np.concatenate([[index.pad_token] * 2, data.splits['train']]).astype(np.int64)
    cids = index.canonical[torch.from_numpy(stream).cuda()]
    for o in (2, 3):
        keys = ngram_keys(cids[None], o, 2)[0]
        tier = HotTier(gen_data, meta, 200, o)
        ref = hot_lookup_mphf(keys.cpu().numpy(), tier.mphf(), tier.slot_keys)
        assert np.array_equal(index.hot_slots(keys, o).cpu().numpy(), ref) and (ref >= 0).any()
