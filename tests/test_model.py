import os

import numpy as np
import pytest
import torch

from engramlib.data import HotTier, TokenData, load_meta
from engram import NgramIndex, hash_multipliers, multiply_xor_hash, ngram_keys, unpack_ids, ID_BITS
from configurator import ConfigError
from factory import ModelConfig
from model import GPT
import factory
from engramlib import optim

PAPER = {'hash_500k': ('hash', 500_000, 100_000), 'nine_100_400k': ('nine', 400_000, 100_000),
         'nine_50_450k': ('nine', 450_000, 50_000), 'nine_20_480k': ('nine', 480_000, 20_000)}

def empty_index(vocab=10):
    z = torch.zeros(0, dtype=torch.long)
    return NgramIndex(np.arange(vocab + 1), {2: (z, z), 3: (z, z)}, (2, 3))


def test_paper_configs_have_exactly_equal_table_and_total_params():
    counts = {}
    with torch.device('meta'):   # shapes only: no 300M-parameter allocation
        for name, (mem, table, hot) in PAPER.items():
            counts[name] = GPT(ModelConfig.from_args(vocab_size=128_832, memory=mem, table_size=table, hot_size=hot),
                               index=empty_index()).param_counts()
    assert {c['tables'] for c in counts.values()} == {128_000_000}
    assert len({c['total'] for c in counts.values()}) == 1
    assert counts['hash_500k']['gate'] == 3 * (2 * 256 * 768 + 2 * 768)    # W_K, W_V, 2 RMSNorms per layer


def test_per_layer_tables_multiply_table_params():
    with torch.device('meta'):
        shared = GPT(ModelConfig.from_args(memory='hash', table_size=1000), index=empty_index()).param_counts()
        own = GPT(ModelConfig.from_args(memory='hash', table_size=1000, engram_shared_tables=False), index=empty_index()).param_counts()
    assert own['tables'] == 3 * shared['tables'] == 3 * 2 * 2 * 1000 * 64


def np_hash(keys, order, mult, size):
    """Reference multiply-xor + fmix64 in numpy uint64 (defined wrap-around)."""
    with np.errstate(over='ignore'):
        k = keys.astype(np.uint64)
        m = mult.numpy().astype(np.uint64)
        out = []
        for head in range(m.shape[0]):
            h = np.zeros_like(k)
            for i in range(order):
                h ^= ((k >> np.uint64(ID_BITS * i)) & np.uint64((1 << ID_BITS) - 1)) * m[head, i]
            h ^= h >> np.uint64(33); h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33); h *= np.uint64(0xC4CEB9FE1A85EC53)
            h ^= h >> np.uint64(33)
            out.append(((h & np.uint64((1 << 63) - 1)) % np.uint64(size)).astype(np.int64))
        return np.stack(out, -1)

@pytest.mark.parametrize('size', [499_979, 500_000, 4096, 7])
def test_torch_hash_equals_uint64_reference(size):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 1 << ID_BITS, size=(5000, 3), dtype=np.int64)
    keys = ids[:, 0] | (ids[:, 1] << 21) | (ids[:, 2] << 42)
    mult = hash_multipliers(7, 2, 2, 3)[1]
    got = multiply_xor_hash(torch.from_numpy(keys), 3, mult, size).numpy()
    assert np.array_equal(got, np_hash(keys, 3, mult, size))
    assert np.array_equal(unpack_ids(torch.from_numpy(keys), 3).numpy(), ids)


def test_window_keys_use_the_real_preceding_tokens(gen_data):
    """Keys of a window with its context == keys computed over the whole stream."""
    data = TokenData(gen_data, 2)
    canon = torch.from_numpy(np.load(os.path.join(gen_data, 'canonical.npy')).astype(np.int64))
    pad = len(canon) - 1
    stream = np.concatenate([[pad, pad], data.splits['train'], data.splits['val']]).astype(np.int64)
    full = {o: ngram_keys(canon[torch.from_numpy(stream)][None], o, 2)[0] for o in (2, 3)}
    n_train = len(data.splits['train'])
    for split, starts, offset in (('train', [0, 1, 5, 100], 0), ('val', [0, 1, 40], n_train)):
        x, y, c = data.windows(split, np.array(starts), 16)
        cids = canon[torch.from_numpy(np.concatenate([c, x], 1))]
        for o in (2, 3):
            k = ngram_keys(cids, o, 2)
            for b, s in enumerate(starts):
                assert torch.equal(k[b], full[o][offset + s: offset + s + 16])


def tiny_model(gen_data, memory, noise=None, **kw):
    cfg = ModelConfig.from_args(**{**dict(vocab_size=448, n_layer=3, n_head=2, n_embd=32, block_size=32, memory=memory,
                              engram_layers=(1, 2), table_size=257, hot_size=200, engram_head_dim=8), **kw})
    index, _ = factory.load_index(gen_data, load_meta(gen_data), cfg)
    torch.manual_seed(0)
    return factory.build_model(cfg, index, noise)

def test_nine_reads_the_hot_row_at_the_mphf_slot(gen_data):
    model = tiny_model(gen_data, 'nine')
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 50]), 32))
    route = model.index(torch.cat([c, x], 1), 2)
    keys, slots = route.keys, route.slots
    rows = model.memory.rows(route)                          # (B, T, O*K)
    K, per_order = 2, 200 * 2 + 2 * 257
    meta = load_meta(gen_data)
    for oi, o in enumerate((2, 3)):
        tier = HotTier(gen_data, meta, 200, o)
        ref = torch.from_numpy(np.where(np.isin(keys[o].numpy(), tier.slot_keys),
                                        np.searchsorted(np.sort(tier.slot_keys), keys[o].numpy()), -1))
        hot = slots[o] >= 0
        assert torch.equal(hot, ref >= 0) and hot.any() and (~hot).any()
        assert torch.equal(torch.from_numpy(tier.slot_keys)[slots[o][hot]], keys[o][hot])   # stored key check
        r = rows[..., oi * K:(oi + 1) * K]
        assert torch.equal(r[hot], oi * per_order + slots[o][hot, None] * K + torch.arange(K))
        cold_rows = r[~hot] - oi * per_order - 400
        assert ((cold_rows >= 0) & (cold_rows < 2 * 257)).all()

def test_hash_and_nine_label_the_same_positions_hot(gen_data):
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('val', np.array([0, 32]), 32))
    labels = [tiny_model(gen_data, m)(x, y, prev=c, diag=True)[2]['is_hot'] for m in ('hash', 'nine', 'none')]
    assert torch.equal(labels[0], labels[1]) and torch.equal(labels[0], labels[2])

def test_diagnostics_do_not_change_the_loss(gen_data):
    model = tiny_model(gen_data, 'nine')
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('val', np.array([0, 32]), 32))
    _, loss, nothing = model(x, y, prev=c)
    _, loss_d, info = model(x, y, prev=c, diag=True)
    assert nothing == {}
    assert torch.equal(loss, loss_d) and torch.allclose(info['loss'].mean(), loss)
    assert info['alpha'].shape == (2, 2, 32) and ((info['alpha'] > 0) & (info['alpha'] < 1)).all()

def test_signed_sqrt_gate_changes_alpha_and_trains(gen_data):
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('val', np.array([0, 32]), 32))
    base = tiny_model(gen_data, 'nine')(x, y, prev=c, diag=True)
    model = tiny_model(gen_data, 'nine', engram_gate='signed_sqrt')     # same weights: no new parameters
    _, loss, info = model(x, y, prev=c, diag=True)
    s = torch.logit(base[2]['alpha'][0].double())                       # first Engram layer: same h, same logit
    expect = torch.sigmoid(s.sign() * s.abs().clamp_min(1e-6).sqrt())
    assert torch.allclose(info['alpha'][0].double(), expect, atol=1e-5) and not torch.equal(loss, base[1])
    loss.backward()
    assert model.memory.table.weight.grad.abs().sum() > 0

def test_short_conv_starts_as_identity_then_learns(gen_data):
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('val', np.array([0, 32]), 32))
    base = tiny_model(gen_data, 'nine')
    model = tiny_model(gen_data, 'nine', engram_short_conv=True)
    model.load_state_dict({**model.state_dict(), **base.state_dict()})
    loss = model(x, y, prev=c)[1]
    assert torch.equal(loss, base(x, y, prev=c)[1])                    # zero conv: the paper's output
    loss.backward()
    conv = model.transformer.h[1].engram.short_conv.conv.weight
    assert conv.grad.abs().sum() > 0
    with torch.no_grad():
        conv.add_(0.1)
    assert not torch.equal(model(x, y, prev=c)[1], loss)

def test_model_config_errors_are_clear():
    with pytest.raises(ConfigError, match=r'engram_layers \[2, 4, 6\] has \[4, 6\] outside'):
        GPT(ModelConfig.from_args(n_layer=4, memory='hash'), index=empty_index())
    with pytest.raises(ConfigError, match='table_size must be > 0'):
        GPT(ModelConfig.from_args(memory='hash', table_size=0), index=empty_index())


def test_rowwise_adamw_equals_adamw_on_touched_rows_and_skips_the_rest():
    torch.manual_seed(0)
    from engramlib.optim import RowwiseAdamW
    w0 = torch.randn(6, 4)
    dense, lazy = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    o1 = torch.optim.AdamW([dense], lr=0.1, betas=(0.9, 0.95), weight_decay=0.1)
    o2 = RowwiseAdamW([{'params': [lazy], 'rowwise': True, 'weight_decay': 0.1}], lr=0.1, betas=(0.9, 0.95))
    for _ in range(3):                      # every row touched: identical to AdamW
        g = torch.randn(6, 4)
        dense.grad, lazy.grad = g.clone(), g.clone()
        o1.step(), o2.step()
    assert torch.allclose(dense, lazy, atol=1e-6)
    before = lazy.detach().clone()
    g = torch.zeros(6, 4)
    g[[1, 4]] = torch.randn(2, 4)           # rows 1 and 4 read this step
    lazy.grad = g
    o2.step()
    changed = (lazy.detach() != before).any(1)
    assert changed.tolist() == [False, True, False, False, True, False]
    assert o2.state[lazy]['row_step'].tolist() == [3, 4, 3, 3, 4, 3]

def test_rowwise_table_optimizer_checkpoints_and_trains(gen_data):
    model = tiny_model(gen_data, 'nine')
    opt = optim.configure_optimizers(model, 0.1, 1e-3, (0.9, 0.95), 'cpu', table_optimizer='rowwise')
    assert [len(g['params']) for g in opt.param_groups][-1] == 1 and opt.param_groups[-1]['rowwise']
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 40]), 32))
    w = model.memory.table.weight.detach().clone()
    model(x, y, prev=c)[1].backward()
    opt.step()
    read = torch.zeros(w.shape[0], dtype=torch.bool)
    read[model.memory.rows(model.index(torch.cat([c, x], 1), 2)).flatten()] = True
    assert torch.equal((model.memory.table.weight.detach() != w).any(1), read)
    state = opt.state_dict()
    opt2 = optim.configure_optimizers(model, 0.1, 1e-3, (0.9, 0.95), 'cpu', table_optimizer='rowwise')
    opt2.load_state_dict(state)
    assert torch.equal(opt2.state[model.memory.table.weight]['row_step'], opt.state[model.memory.table.weight]['row_step'])


def test_generate_greedy_continues_with_the_real_ngram_context(gen_data):
    """Greedy sampling past block_size: each token is the argmax of a forward over the last block_size
    tokens whose n-gram context is the real text before the window (pad only before the prompt)."""
    model = tiny_model(gen_data, 'nine').eval()
    data = TokenData(gen_data, 2)
    prompt = torch.from_numpy(data.windows('val', np.array([0]), 32)[0])[:, :28]
    out = model.generate(prompt, 8, temperature=0)
    assert out.shape == (1, 36) and torch.equal(out[:, :28], prompt)
    pad = model.index.pad_token
    stream = torch.cat([torch.full((1, 2), pad), out], 1)
    for t in range(28, 36):
        lo = max(0, t - 32)
        window, prev = stream[:, 2 + lo: 2 + t], stream[:, lo: 2 + lo]
        with torch.no_grad():
            logits = model(window, prev=prev)[0]
        assert logits.argmax(-1).item() == out[0, t].item()
