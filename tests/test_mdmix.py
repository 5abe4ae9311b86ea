import hashlib
import math

import numpy as np
import pytest
import torch

import mdmix
from mdmix import Noise, md5, mdmix_hash

RFC1321_SUITE = {b'': 'd41d8cd98f00b204e9800998ecf8427e', b'a': '0cc175b9c0f1b6a831c399e269772661',
                 b'abc': '900150983cd24fb0d6963f7d28e17f72', b'message digest': 'f96b697d7cb7938d525a2f31aaf161d0',
                 b'abcdefghijklmnopqrstuvwxyz': 'c3fcd3d76192e4007dfb496cca67e13b',
                 b'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789': 'd174ab98d277d9f5a5611c2c9f419d9f',
                 b'1234567890' * 8: '57edf4a22be3c955ac49da2e2107b67a'}


def test_constants_are_rfc1321():
    assert mdmix.T[0] == 0xD76AA478 and mdmix.T[63] == 0xEB86D391 and len(set(mdmix.T)) == 64
    assert mdmix.MSG_INDEX[16:20] == [1, 6, 11, 0] and mdmix.MSG_INDEX[48:52] == [0, 7, 14, 5]

def test_md5_from_primitives_equals_hashlib_on_rfc1321_suite():
    got = md5(list(RFC1321_SUITE))
    assert [g.hex() for g in got] == list(RFC1321_SUITE.values())

def test_md5_from_primitives_equals_hashlib_on_random_messages():
    rng = np.random.default_rng(0)
    lengths = list(range(0, 200)) + rng.integers(0, 700, size=1800).tolist()   # 0..11 blocks, all pad cases
    msgs = [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in lengths]
    assert md5(msgs) == [hashlib.md5(m).digest() for m in msgs]

def bits(x):
    return torch.stack([(x >> i) & 1 for i in range(63)], -1)

def test_mdmix_hash_avalanche():
    """Flipping one input bit flips ~half of the 63 output bits (before the modulo)."""
    rng = np.random.default_rng(1)
    keys = torch.from_numpy(rng.integers(0, 2**63, size=2000, dtype=np.int64))
    salt = torch.tensor([12345])
    raw = lambda k: mdmix_hash(k, salt, 2**63 - 1)[..., 0]     # size 2^63-1: the 63-bit value itself (almost)
    base = bits(raw(keys))
    rates = []
    for b in range(63):
        flipped = bits(raw(keys ^ (1 << b)))
        rates.append((flipped != base).double().mean().item())
    rates = np.array(rates)
    assert abs(rates.mean() - 0.5) < 0.01 and rates.min() > 0.45 and rates.max() < 0.55, rates

@pytest.mark.parametrize('size', [1009, 1024, 4000])     # prime, power of two, composite
def test_mdmix_hash_uniform_chi_square(size):
    keys = torch.arange(200_000, dtype=torch.long) * 2**21 + 7     # structured keys (2-grams with one id fixed)
    idx = mdmix_hash(keys, torch.tensor([3, 4]), size)
    for h in range(2):
        counts = torch.bincount(idx[:, h], minlength=size).double()
        exp = len(keys) / size
        chi2 = ((counts - exp) ** 2 / exp).sum().item()
        z = (chi2 - (size - 1)) / math.sqrt(2 * (size - 1))    # chi-square -> approx normal
        assert abs(z) < 4, (size, h, z)

def test_mdmix_heads_are_independent():
    keys = torch.from_numpy(np.random.default_rng(2).integers(0, 2**62, size=100_000, dtype=np.int64))
    idx = mdmix_hash(keys, torch.tensor([1, 2]), 1000)
    both = (idx[:, 0] * 1000 + idx[:, 1])
    assert (idx[:, 0] == idx[:, 1]).double().mean().item() == pytest.approx(1e-3, abs=5e-4)
    assert abs(np.corrcoef(idx[:, 0].numpy(), idx[:, 1].numpy())[0, 1]) < 0.01
    assert torch.unique(both).numel() > 0.95 * len(keys)


def xi(kind='gaussian', step=3, stream='emb', layer=1, seed=0, tokens=None):
    tokens = tokens if tokens is not None else torch.arange(64).view(4, 16) * 37
    return Noise({stream: 1.0}, kind=kind, seed=seed).xi(tokens, step, stream, 256, layer)

def test_noise_is_deterministic_and_standardized():
    a, b = xi(), xi()
    assert torch.equal(a, b)
    big = Noise({'emb': 1.0}).xi(torch.arange(4096).view(16, 256), 0, 'emb', 256)
    assert abs(big.mean().item()) < 0.005 and abs(big.var().item() - 1) < 0.01
    kurt = ((big - big.mean()) ** 4).mean() / big.var() ** 2
    assert abs(kurt.item() - 3) < 0.05                            # Gaussian, not uniform (1.8)
    r = Noise({'emb': 1.0}, kind='rademacher').xi(torch.arange(4096).view(16, 256), 0, 'emb', 256)
    assert set(r.unique().tolist()) == {-1.0, 1.0} and abs(r.mean().item()) < 0.005

@pytest.mark.parametrize('change', [dict(step=4), dict(stream='logits'), dict(layer=2), dict(seed=1),
                                    dict(tokens=torch.arange(64).view(4, 16) * 37 + 1)])
def test_noise_decorrelates_across_inputs(change):
    base, other = xi().flatten(), xi(**change).flatten()
    assert abs(np.corrcoef(base.numpy(), other.numpy())[0, 1]) < 0.03
    assert not torch.equal(base, other)

def test_cosine_tail_schedule():
    s = lambda t: float(mdmix.schedule(torch.tensor(t), 1000, 'cosine_tail', 0.2))
    assert s(0) == s(800) == 1.0 and s(900) == pytest.approx(0.5) and s(1000) == pytest.approx(0.0)
    assert mdmix.schedule(999, 1000, 'constant', 0.2) == 1.0


def test_engram_mdmix_hash_is_selectable(gen_data):
    from test_model import tiny_model
    import numpy as np
    from engramlib.data import TokenData
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('val', np.array([0]), 32))
    m1, m2 = tiny_model(gen_data, 'hash'), tiny_model(gen_data, 'hash', engram_hash='mdmix')
    route = m1.index(torch.cat([c, x], 1), 2, hot=False)
    r1, r2 = m1.memory.rows(route), m2.memory.rows(route)
    assert r1.shape == r2.shape and not torch.equal(r1, r2)
    assert ((r2 >= 0) & (r2 < m2.memory.rows_per_set)).all()
    assert torch.equal(m1.state_dict()['memory.table.weight'], m2.state_dict()['memory.table.weight'])


def test_zero_sigma_is_bit_identical_to_no_noise(gen_data):
    from test_model import tiny_model
    from engramlib.data import TokenData
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 40]), 32))
    plain = tiny_model(gen_data, 'nine')
    zero = tiny_model(gen_data, 'nine', noise=Noise({'emb': 0.0, 'q': 0.0, 'k': 0.0, 'logits': 0.0, 'mem': 0.0}, mem_scope='hot'))
    l1, l2 = plain(x, y, prev=c, step=5)[1], zero(x, y, prev=c, step=5)[1]
    l1.backward(), l2.backward()
    assert torch.equal(l1, l2)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), zero.parameters()))

@pytest.mark.parametrize('scope', ['hot', 'cold'])
def test_memory_noise_touches_only_its_scope(gen_data, scope):
    from test_model import tiny_model
    from engramlib.data import TokenData
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 40]), 32))
    model = tiny_model(gen_data, 'nine')
    route = model.index(torch.cat([c, x], 1), 2)
    slots = route.slots
    e = model.memory(model.memory.rows(route))
    noisy = Noise({'mem': 0.5}, mem_scope=scope).bind(x, 7).memory(e, route.is_hot_order)
    changed = (noisy != e).view(2, 32, 2, -1).any(-1)                       # (B, T, order)
    hot = torch.stack([slots[2] >= 0, slots[3] >= 0], -1)
    assert torch.equal(changed, hot if scope == 'hot' else ~hot)
