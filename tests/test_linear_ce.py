"""The chunked linear + cross-entropy (engramlib/linear_ce.py) against the plain head, at tiny shapes on CPU in fp32: the same
per-position losses bit for bit, the mean loss and every gradient within 1e-6, with label smoothing and logit noise on."""
import numpy as np
import pytest
import torch

from engramlib.data import TokenData
from mdmix import Noise
from test_model import tiny_model


def losses_and_grads(model, x, y, c, chunk):
    model.loss_chunk = chunk
    model.zero_grad()
    logits, loss, info = model(x, y, prev=c, step=torch.tensor(3), diag=True)
    loss.backward()
    return logits, loss.detach(), info['loss'], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

@pytest.mark.parametrize('memory, chunk', [('nine', 24), ('hash', 64), ('none', 1000)])
def test_chunked_loss_equals_the_plain_head(gen_data, memory, chunk):
    """Chunks that cut a window (24 rows of 32-token windows), whole windows, one chunk for all: per-position losses
    identical, mean and gradients within 1e-6 (the weight's gradient is summed chunk by chunk)."""
    noise = Noise({'logits': 0.5})
    model = tiny_model(gen_data, memory, noise=noise, label_smoothing=0.1).train()
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 50, 300, 999]), 32))
    logits, plain_loss, plain_pos, plain_grads = losses_and_grads(model, x, y, c, 0)
    none, loss, pos, grads = losses_and_grads(model, x, y, c, chunk)
    assert logits is not None and none is None                      # the chunked path never makes the whole logits
    assert torch.equal(pos, plain_pos)
    assert abs(loss.item() - plain_loss.item()) <= 1e-6
    assert grads.keys() == plain_grads.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], plain_grads[n], rtol=0, atol=1e-6, msg=n)

def test_noise_and_smoothing_reach_the_chunked_loss(gen_data):
    """The options are not dropped on the chunked path: each one moves its losses, as on the plain path."""
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 50]), 32))
    out = {}
    for name, kw in (('plain', {}), ('smooth', {'label_smoothing': 0.1}), ('noise', {'noise': Noise({'logits': 0.5})})):
        model = tiny_model(gen_data, 'nine', **kw).train()
        model.loss_chunk = 16
        out[name] = model(x, y, prev=c, step=torch.tensor(3), diag=True)[2]['loss']
    assert not torch.equal(out['plain'], out['smooth']) and not torch.equal(out['plain'], out['noise'])

def test_eval_without_grad_takes_the_chunks_directly(gen_data):
    model = tiny_model(gen_data, 'hash').eval()
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('val', np.array([0, 40]), 32))
    with torch.no_grad():
        plain = model(x, y, prev=c, diag=True)[2]['loss']
        model.loss_chunk = 8
        chunked = model(x, y, prev=c, diag=True)[2]['loss']
    assert torch.equal(plain, chunked)

@pytest.mark.parametrize('setting, chunk', [(-1, 0), (0, 0), (16, 16)])
def test_the_run_setting_reaches_the_model_and_auto_keeps_cpu_on_the_plain_head(tmp_path, gen_data, setting, chunk):
    import train
    from configurator import apply_config
    from test_train import micro_config
    cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    cfg = train.default_config()
    apply_config(cfg, [cfg_path, f'--loss_chunk={setting}'], train.config_keys)
    assert train.Run(cfg).raw_model.loss_chunk == chunk
    assert train.resolve_loss_chunk(setting, 'cuda') == (4096 if setting == -1 else setting)

def test_a_chunk_that_is_not_a_multiple_of_8_is_refused(tmp_path, gen_data):
    """Row blocks of 8k rows multiply bit for bit as the whole matrix (MKL); 7 rows take another kernel."""
    import train
    from configurator import ConfigError, apply_config
    cfg = train.default_config()
    apply_config(cfg, ['--loss_chunk=100'], train.config_keys)
    with pytest.raises(ConfigError, match='not a multiple of 8'):
        train.validate_config(cfg)

def test_the_chunked_loss_compiles_as_one_graph(gen_data):
    """What torch.compile sees on CUDA, checked with dynamo's eager backend: the chunk loop and its autograd.Function
    trace into one graph, with no graph break, and give the eager loss."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(gen_data, 'nine').train()
    model.loss_chunk = 16
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 50]), 32))
    loss = torch.compile(model, backend='eager')(x, y, prev=c, step=torch.tensor(1))[1]
    loss.backward()
    assert dict(counters['graph_break']) == {} and counters['stats']['unique_graphs'] == 1
    assert loss.item() == model(x, y, prev=c, step=torch.tensor(1))[1].item()

def test_bench_times_the_head_plain_and_chunked_side_by_side():
    """bench.py's head section at the tiny preset (what a GPU run measures at the paper's): every path timed in one
    run; no speed is asserted (bench.py measures, tests do not)."""
    import bench
    h = bench.time_head('tiny', 'cpu', torch.float32, 1)
    assert (h['rows'], h['width'], h['vocab']) == (512, 64, 50304)
    assert set(h['ms']) == {'plain', 'chunk 128', 'chunk 32'} and h['ratio_over_plain']['plain'] == 1.0

def test_bench_profile_names_the_ops_of_a_step_and_the_gap_over_the_first_config():
    """The profile bench.py --profile prints: per config every op's time per step (summing to the step's op time),
    the top ones with their shares, and for Hash its time over the baseline's, op by op."""
    import bench
    prof = bench.profile_steps('tiny', 'cpu', torch.float32, False, {k: bench.bench_config(k) for k in ('baseline', 'hash')}, 1)
    assert set(prof) == {'baseline', 'hash'}
    for r in prof.values():
        assert sum(r['ops'].values()) == pytest.approx(r['ms_per_step']) and 'aten::mm' in r['ops']
        shares = [share for _, share in r['top'].values()]
        assert 0 < sum(shares) <= 1 + 1e-9 and shares == sorted(shares, reverse=True)
    a, b = prof['baseline']['ops'], prof['hash']['ops']
    assert prof['hash']['gap_over_baseline'] and all(v == b.get(k, 0.0) - a.get(k, 0.0) for k, v in prof['hash']['gap_over_baseline'].items())

def test_the_chunked_loss_keeps_no_logits_for_the_backward(gen_data):
    """What autograd saves for the backward, seen by saved_tensors_hooks: the plain head saves its whole logits
    (positions x vocab); the chunked path saves none (its gradients were computed in the forward)."""
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 50]), 32))
    model = tiny_model(gen_data, 'hash').train()
    widest = {}
    for chunk in (0, 16):
        model.loss_chunk, saved = chunk, []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
            model(x, y, prev=c, step=torch.tensor(1))[1].backward()
        widest[chunk] = max(s[-1] for s in saved if len(s))
    V = model.config.vocab_size
    assert widest[0] == V and widest[16] < V
