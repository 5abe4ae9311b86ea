"""Count-Sketch LoRA (extensions/mdx/cs_lora.py) against plain LoRA: the sketched forward is the materialized
low-rank update, indices are pure integer hashing, equal parameters by default, and a fine-tune from a
checkpoint trains the adapters only."""
import os

import torch

from conftest import prepare, run, write_corpus
from extensions.mdx import cs_lora
from test_model import tiny_model
from test_train import micro_config, weights


def test_sketched_forward_equals_the_materialized_update(gen_data):
    for kind in ('lora', 'cslora'):
        model = tiny_model(gen_data, 'hash', adapter=kind, adapter_rank=4)
        with torch.no_grad():
            for p in cs_lora.adapter_parameters(model):
                p.normal_()                             # B starts at 0: give the update something to show
        layer = model.transformer.h[1].attn.c_attn
        x = torch.randn(3, 7, 32)
        dW = layer.delta_weight()
        assert dW.shape == layer.base.weight.shape and dW.abs().sum() > 0
        assert torch.allclose(layer(x) - layer.base(x), x @ dW.T, atol=1e-4)

def test_sketch_indices_are_integer_hashes_of_cell_and_salt(gen_data):
    model = tiny_model(gen_data, 'hash', adapter='cslora', adapter_rank=4)
    layers = [m for _, m in cs_lora.targets(model)]
    a, b = layers[0], layers[1]
    assert a.idx_A.dtype == torch.long and set(a.sign_A.unique().tolist()) == {-1.0, 1.0}
    idx, sign = cs_lora.sketch(torch.arange(a.idx_A.numel()), 0, model.adapter_pools.size(0))
    assert torch.equal(idx.view_as(a.idx_A), a.idx_A) and torch.equal(sign.view_as(a.sign_A), a.sign_A)
    assert not torch.equal(a.idx_A[:, :8], b.idx_A[:, :8])          # another salt, other cells of the pool
    cells, P = torch.cat([m.idx_A.flatten() for m in layers]), model.adapter_pools.size(0)
    expected = P * (1 - (1 - 1 / P) ** len(cells))                  # pool cells used under uniform hashing
    assert abs(len(cells.unique()) / expected - 1) < 0.03

def test_equal_trainable_parameters_by_default(gen_data):
    lora = tiny_model(gen_data, 'hash', adapter='lora', adapter_rank=4)
    sk = tiny_model(gen_data, 'hash', adapter='cslora', adapter_rank=4)
    n = lambda m: sum(p.numel() for p in cs_lora.adapter_parameters(m))
    assert n(lora) == n(sk) == cs_lora.lora_params(lora, 4) == 3 * 4 * (32 + 96) + 3 * 4 * (32 + 128)
    assert tiny_model(gen_data, 'hash', adapter='cslora', adapter_rank=4, adapter_pool=1000).param_counts()['adapter'] == 1000

def test_fine_tune_from_a_checkpoint_trains_the_adapters_only(tmp_path, gen_data, corpus):
    base_cfg, base = micro_config(tmp_path, gen_data, name='base.py', memory='hash', max_iters=8, lr_decay_iters=8)
    run(['train.py', base_cfg])
    write_corpus(str(tmp_path / 'other.txt'), n_docs=200, seed=5)
    other = prepare(tmp_path / 'other', str(tmp_path / 'other.txt'), corpus['tokenizer'], '--hot_sizes', '200', '--val_frac', '0.1')
    for kind in ('lora', 'cslora'):
        cfg_path, cfg = micro_config(tmp_path, other, name=f'{kind}.py', out_dir=str(tmp_path / kind), max_iters=8, lr_decay_iters=8, memory='hash',
                                     init_from=os.path.join(base['out_dir'], 'ckpt.pt'), adapter=kind, adapter_rank=4,
                                     n_layer=2, learning_rate=1e-2)   # a wrong model key: the checkpoint's model applies
        p = run(['train.py', cfg_path])
        assert 'its model settings apply (n_layer)' in p.stdout
        before, after = weights(base['out_dir']), weights(cfg['out_dir'])
        for k, v in after.items():
            src = k.replace('.base.', '.')
            if src in before:
                assert torch.equal(before[src], v), k                   # the base did not move
        moved = [k for k in after if k not in before and k.replace('.base.', '.') not in before]
        assert moved and all(not torch.equal(after[k], torch.zeros_like(after[k])) for k in moved if k.endswith('B'))
