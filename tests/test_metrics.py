import pytest
import torch

from engramlib.metrics import accumulate, finalize, flip, new_sums


def test_stratified_means_and_buckets_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    is_hot = torch.tensor([[[True, False, False, True]], [[False, False, True, False]]])   # (O=2, B=1, T=4)
    alpha = torch.tensor([[[0.1, 0.5, 0.9, 1.0]], [[0.3, 0.3, 0.3, 0.0]]])                 # (L=2, B=1, T=4)
    s = new_sums(2, 2)
    accumulate(s, loss, is_hot, alpha)
    m = finalize(s, (2, 3), (2, 4))
    assert m['val_loss'] == pytest.approx(2.5)
    assert m['val_loss_hot'] == pytest.approx(8 / 3) and m['val_loss_cold'] == pytest.approx(2.0)
    assert m['hot_cold_delta'] == pytest.approx(2 / 3)
    assert m['hot_share'] == 0.75 and m['hot_share_o2'] == 0.5 and m['hot_share_o3'] == 0.25
    assert m['alpha_hot_L2'] == pytest.approx(2 / 3) and m['alpha_cold_L2'] == pytest.approx(0.5)
    assert m['alpha_hot_L4'] == pytest.approx(0.2) and m['alpha_cold_L4'] == pytest.approx(0.3)
    # layer mean alpha: [0.2, 0.4, 0.6, 0.5] -> buckets 1, 2, 3, 2
    assert m['alpha_hot'] == pytest.approx((0.2 + 0.6 + 0.5) / 3) and m['alpha_cold'] == pytest.approx(0.4)
    assert m['delta_alpha'] == pytest.approx(m['alpha_hot'] - m['alpha_cold'])
    assert [b['count'] for b in m['alpha_buckets']] == [0, 1, 2, 1, 0]
    assert m['alpha_buckets'][2]['mean_loss'] == pytest.approx(3.0) and m['alpha_buckets'][2]['hot_share'] == 0.5
    # layer 2 alone: 0.1 -> [0,.2), 0.5 -> [.4,.6), 0.9 and 1.0 -> [.8,1.0]
    assert [b['count'] for b in m['alpha_buckets_L2']] == [1, 0, 1, 0, 2]
    assert m['alpha_buckets_L2'][4]['mean_loss'] == pytest.approx(3.5) and m['alpha_buckets_L2'][4]['hot_share'] == 1.0

def test_sums_over_batches_equal_one_batch():
    torch.manual_seed(0)
    loss, hot, alpha = torch.rand(4, 8) * 5, torch.rand(2, 4, 8) < 0.4, torch.rand(3, 4, 8)
    whole, parts = new_sums(2, 3), new_sums(2, 3)
    accumulate(whole, loss, hot, alpha)
    for b in range(4):
        accumulate(parts, loss[b:b + 1], hot[:, b:b + 1], alpha[:, b:b + 1])
    a, b = finalize(whole, (2, 3), (2, 4, 6)), finalize(parts, (2, 3), (2, 4, 6))
    assert a.keys() == b.keys()
    assert a['val_loss_hot'] == pytest.approx(b['val_loss_hot'], rel=1e-12)
    assert a['alpha_buckets_L4'] == b['alpha_buckets_L4']

def test_no_memory_has_no_alpha_rows():
    s = new_sums(2, 0)
    accumulate(s, torch.ones(1, 3), torch.tensor([[[True, False, False]], [[False] * 3]]))
    m = finalize(s, (2, 3), ())
    assert m['hot_share'] == pytest.approx(1 / 3) and 'alpha_hot' not in m

@pytest.mark.parametrize('series, expect', [
    # the paper's shape: hot advantage, then cold advantage
    ([(250, -0.1), (500, -0.25), (750, -0.05), (1000, 0.02), (1250, 0.1), (1500, 0.07)],
     (1000, -0.25, 500, 0.1, 1250)),
    # never negative: no flip (delta starting >= 0 is not a flip)
    ([(0, 0.1), (250, 0.3)], (None, None, None, 0.3, 250)),
    # never positive: no flip
    ([(0, -0.1), (250, -0.3)], (None, -0.3, 250, None, None)),
    # several sign changes: the first one counts; extremes split at it
    ([(0, -0.2), (1, 0.1), (2, -0.4), (3, 0.5)], (1, -0.2, 0, 0.5, 3)),
    # exactly zero counts as flipped (delta >= 0)
    ([(0, -0.1), (1, 0.0), (2, 0.2)], (1, -0.1, 0, 0.2, 2)),
])
def test_flip_detection(series, expect):
    f = flip(series)
    assert (f['flip_iter'], f['max_hot_advantage'], f['max_hot_advantage_iter'],
            f['max_cold_advantage'], f['max_cold_advantage_iter']) == expect
