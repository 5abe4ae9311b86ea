"""The GPU path, caught on CPU: split-invariant batches, background checkpoints, bf16 autocast dtype
mixes, mixed devices (the meta device as the second device), recompiles and graph breaks (dynamo's
eager backend), DDP buffers. tests/test_cuda.py runs the real thing where a GPU exists."""
import glob
import os
import threading
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import factory
import train
from engramlib.checkpoint import CKPT_VERSION, CheckpointWriter
from configurator import apply_config
from conftest import ROOT, run
from engramlib.data import DataError, TokenData
from test_model import tiny_model
from test_train import micro_config, rows, weights


def test_every_split_of_the_global_batch_draws_the_same_windows(gen_data):
    data = TokenData(gen_data, 2)
    ref = data.train_starts(0, 7, range(16), 32)
    assert len(set(ref.tolist())) == 16
    for B, G in ((4, 4), (16, 1), (8, 2), (2, 8)):
        starts = np.concatenate([data.train_starts(0, 7, range(g * B, (g + 1) * B), 32) for g in range(G)])
        assert np.array_equal(starts, ref)
    assert not np.array_equal(data.train_starts(0, 8, range(16), 32), ref)       # another iter, other windows
    assert not np.array_equal(data.train_starts(1, 7, range(16), 32), ref)       # another seed

def test_splits_and_processes_give_the_same_training(tmp_path, gen_data):
    """4x4, 16x1, 8x2 and 2 gloo processes x (4x2): same losses, evals and weights after 3 steps."""
    cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=3, lr_decay_iters=3, eval_interval=3, log_interval=1)
    outs = {}
    for B, G in ((4, 4), (16, 1), (8, 2)):
        outs[f'{B}x{G}'] = str(tmp_path / f'{B}x{G}')
        run(['train.py', cfg_path, f'--batch_size={B}', f'--gradient_accumulation_steps={G}', f"--out_dir='{outs[f'{B}x{G}']}'",
             f'--eval_batch_size={B}'])
    outs['ddp2x4x2'] = str(tmp_path / 'ddp')
    run(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py', cfg_path, '--batch_size=4',
         '--gradient_accumulation_steps=4', f"--out_dir='{outs['ddp2x4x2']}'"], env={**os.environ, 'OMP_NUM_THREADS': '1'})
    ref = outs.pop('4x4')
    for name, out in outs.items():
        assert [r['train_loss'] for r in rows(out, 'train')] == pytest.approx([r['train_loss'] for r in rows(ref, 'train')], abs=2e-5), name
        assert [r['val_loss'] for r in rows(out)] == pytest.approx([r['val_loss'] for r in rows(ref)], abs=2e-5), name
        a, b = weights(ref), weights(out)
        assert all(torch.allclose(a[k], b[k], atol=2e-5) for k in a), name
        assert rows(out)[-1]['n_positions'] == 16 * 32


def test_checkpoint_writer_snapshots_then_writes_in_the_background(tmp_path):
    w = torch.arange(1e6)
    writer, path = CheckpointWriter(), str(tmp_path / 'ckpt.pt')
    writer.save(path, {'format_version': CKPT_VERSION, 'w': w, 'iter': 1})
    w.zero_()                                             # training goes on changing the weights
    writer.save(path, {'format_version': CKPT_VERSION, 'w': w + 5, 'iter': 2})            # waits for the first write, then replaces it
    assert writer.thread is not None and writer.thread.name == 'checkpoint-writer'
    writer.wait()
    got = torch.load(path, weights_only=True)
    assert got['iter'] == 2 and torch.equal(got['w'], torch.full((1000000,), 5.0))
    (tmp_path / 'file').write_text('')                    # a failed background write surfaces in wait()
    writer.save(str(tmp_path / 'file' / 'ckpt.pt'), {'format_version': CKPT_VERSION, 'iter': 3})
    with pytest.raises(DataError, match=r'writing .*file/ckpt\.pt failed \(FileExistsError'):
        writer.wait()
    writer.wait()                                         # reported once
    assert torch.load(path, weights_only=True)['iter'] == 2 and sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'file']

def test_the_first_snapshot_survives_changes_made_while_it_is_written(tmp_path, monkeypatch):
    from engramlib import checkpoint
    started, release = threading.Event(), threading.Event()
    real = checkpoint.save_checkpoint
    def slow(path, obj):
        started.set()
        release.wait()
        real(path, obj)
    monkeypatch.setattr(checkpoint, 'save_checkpoint', slow)
    w = torch.ones(10)
    writer = CheckpointWriter()
    writer.save(str(tmp_path / 'a.pt'), {'format_version': CKPT_VERSION, 'w': w})
    started.wait()
    w.mul_(7)                                             # mutated while the write is in flight
    release.set()
    writer.wait()
    assert torch.equal(torch.load(tmp_path / 'a.pt', weights_only=True)['w'], torch.ones(10))

def test_ckpt_interval_and_best(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=12, lr_decay_iters=12, eval_interval=4, ckpt_interval=8,
                                 save_best=True)
    run(['train.py', cfg_path])
    ck = torch.load(os.path.join(cfg['out_dir'], 'ckpt.pt'), weights_only=True)
    best = torch.load(os.path.join(cfg['out_dir'], 'best.pt'), weights_only=True)
    assert ck['iter_num'] == 12                            # "last": the end of training (after 8)
    evals = rows(cfg['out_dir'])
    assert best['iter_num'] == min(evals, key=lambda r: r['val_loss'])['iter'] and 'optimizer' not in best
    assert best['val_loss'] == min(r['val_loss'] for r in evals)


class RMSNormDtypes(TorchFunctionMode):
    """Records (input dtype, weight dtype) of every rms_norm call."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.rms_norm:
            weight = args[2] if len(args) > 2 else kwargs.get('weight')
            self.seen.append((args[0].dtype, weight.dtype if weight is not None else None))
        return func(*args, **kwargs)

@pytest.mark.parametrize('opts', [{}, {'engram_short_conv': True, 'gate_keys': 'decoupled'}])
def test_rms_norm_gets_one_dtype_under_bf16_autocast(gen_data, opts):
    """On CUDA a bf16 input with an fp32 weight falls off the fused rms_norm kernel ("Cannot dispatch
    to fused implementation"): every call must see one dtype."""
    model = tiny_model(gen_data, 'nine', **opts)
    x, y, c = (torch.from_numpy(a) for a in TokenData(gen_data, 2).windows('train', np.array([0, 40]), 32))
    with RMSNormDtypes() as mode, torch.autocast('cpu', dtype=torch.bfloat16):
        model(x, y, prev=c)[1].backward()
    assert len(mode.seen) >= 4 and all(i == w for i, w in mode.seen), mode.seen

def test_ckpt_eval_equals_train_eval_in_bf16(tmp_path, gen_data):
    from report.evaluate import evaluate_checkpoint
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4, dtype='bfloat16')
    run(['train.py', cfg_path])
    rep = evaluate_checkpoint(os.path.join(cfg['out_dir'], 'ckpt.pt'))
    last = rows(cfg['out_dir'])[-1]
    assert rep['dtype'] == 'bfloat16' and rep['iter'] == last['iter'] == 4
    for k in ('val_loss', 'val_loss_hot', 'val_loss_cold', 'alpha_hot', 'alpha_cold', 'alpha_buckets'):
        assert rep['metrics'][k] == last[k], k


META_OPTS = [dict(memory='nine'), dict(memory='hash'), dict(memory='nine', gate_keys='decoupled', engram_gate='signed_sqrt',
             gate_inputs=('is_hot', 'log_freq', 'collision'), engram_short_conv=True, hot_dropout=0.1),
             dict(memory='nine', hot_index='hashed', hot_collision=4, engram_shared_tables=False, hot_layers=(1,)),
             dict(memory='hash', engram_hash='mdmix'),
             dict(memory='nine', gate_credit=0.1, hot_teacher=0.1, hot_ramp_iters=10, hot_dropout=0.1, hot_reg_ramp_iters=5,
                  hot_collision=4, hot_collision_mode='semantic', hot_fingerprint_bits=8),
             dict(memory='nine', ffn='moe', moe_router='switch', moe_bias_rate=0.01, embedding='mihe', embed_buckets=64),
             dict(memory='hash', ffn='moe', moe_router='hash', moe_choices=2, moe_bias_rate=0.01, embedding='lowrank', embed_rank=4),
             dict(memory='hash', ffn='moe', moe_router='balanced', embedding='mihe', embed_hash='mulxor', embed_buckets=64)]

@pytest.mark.parametrize('opts', META_OPTS)
def test_training_step_runs_on_one_device(gen_data, opts):
    """The model and batch on the meta device: any tensor the forward or backward makes on the CPU
    meets a meta tensor and fails, as a CPU tensor meeting CUDA tensors fails on a GPU."""
    from mdmix import Noise
    noise = Noise({'emb': 0.1, 'q': 0.1, 'k': 0.1, 'logits': 0.1, 'mem': 0.1}, mem_scope='hot', schedule='cosine_tail', max_iters=10)
    model = tiny_model(gen_data, noise=noise, **opts).to('meta')
    x, y, c = (torch.from_numpy(a).to('meta') for a in TokenData(gen_data, 2).windows('train', np.array([0, 40]), 32))
    logits, loss, _ = model(x, y, prev=c, step=torch.tensor(9, device='meta'))
    loss.backward()
    assert loss.device.type == 'meta' and model.memory.table.weight.grad.device.type == 'meta'
    model.eval()
    info = model(x, y, prev=c, diag=True)[2]
    assert info['alpha'].device.type == info['is_hot'].device.type == 'meta'

def test_collision_statistics_compute_on_the_models_device(gen_data):
    from report.evaluate import collision_counts
    model = tiny_model(gen_data, 'nine').to('meta')
    keys, counts = (torch.from_numpy(np.load(os.path.join(gen_data, f'ngrams_o3_{n}.npy'))).to('meta') for n in ('keys', 'counts'))
    out = collision_counts(model.memory, model.index, keys, counts, 1, 3)
    assert all(t.device.type == 'meta' for t in out) and out[1].shape == (2,)


def distinct_configs():
    """Every config in configs/ and its folders at tiny size, one per distinct model + noise setting."""
    seen = {}
    for f in sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')) + glob.glob(os.path.join(ROOT, 'configs', '*', '*.py'))):
        cfg = train.default_config()
        apply_config(cfg, [f], train.config_keys)
        key = tuple((k, cfg[k]) for k in train.config_keys if k not in ('out_dir', 'data_dir', 'wandb_group', 'max_iters', 'lr_decay_iters', 'init_from'))
        seen.setdefault(key, (os.path.relpath(f, ROOT), cfg))
    return list(seen.values())

@pytest.mark.parametrize('name, cfg', distinct_configs(), ids=lambda v: v if isinstance(v, str) else '')
def test_compiled_training_is_one_graph_without_recompiles(gen_data, name, cfg):
    """dynamo (eager backend, fullgraph: a graph break raises) over 3 training steps with new batches
    and step numbers: one compiled frame, no recompiles (a Python int that changes every step, such
    as the noise step, would recompile each time and, past the limit, silently run eager). The reversible
    stack runs eager by design (extensions/mdx/reversible.run_reversible): there, the frames around that break are
    compiled on the first step and never again."""
    from torch._dynamo.testing import CompileCounter
    from mdmix import Noise
    torch._dynamo.reset()
    small = dict(n_layer=3, n_head=2, n_embd=32, block_size=32, engram_layers=(1, 2), table_size=257, hot_size=200, engram_head_dim=8)
    mcfg = factory.model_config({**cfg, **small, 'hot_layers': tuple(l for l in (1,) if cfg['hot_layers']), 'pkm_layers': (1,)}, 448)
    noisy = any(cfg[k] > 0 for k in ('noise_emb', 'noise_qk', 'noise_logits', 'noise_mem'))
    noise = Noise.from_config(cfg) if noisy else None
    model = tiny_model(gen_data, noise=noise, **{k: v for k, v in mcfg.args().items() if k not in small and k != 'vocab_size'})
    counter = CompileCounter()
    reversible = cfg['block'] == 'reversible'
    compiled = torch.compile(model, backend=counter, fullgraph=not reversible)
    data = TokenData(gen_data, 2)
    frames = []
    for it in range(3):
        x, y, c = (torch.from_numpy(a) for a in data.windows('train', data.train_starts(0, it, range(2), 32), 32))
        compiled(x, y, prev=c, step=torch.tensor(it * 1000))[1].backward()
        frames.append(counter.frame_count)
    assert frames == [frames[0]] * 3 and (reversible or frames[0] == 1), f"{name}: compiled frames {frames}"


def test_ddp_does_not_broadcast_the_index_buffers(gen_data, tmp_path):
    from engramlib.system import wrap_ddp
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        ddp = wrap_ddp(tiny_model(gen_data, 'nine'), 'cpu')
        assert getattr(ddp, 'forward_sync_buffers', ddp.broadcast_buffers) is False
        assert any(n.startswith('index.') for n, _ in ddp.module.named_buffers())
    finally:
        dist.destroy_process_group()


def fake_a_small_gpu(monkeypatch, windows=2):
    """A CUDA out-of-memory error for every training forward of more than `windows` windows."""
    from model import GPT
    forward = GPT.forward
    def small_gpu(self, x, *a, **k):
        if self.training and x.shape[0] > windows:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB (faked)')
        return forward(self, x, *a, **k)
    monkeypatch.setattr(GPT, 'forward', small_gpu)

def test_out_of_memory_halves_the_micro_batch_and_the_run_equals_that_split_chosen_by_hand(tmp_path, gen_data, monkeypatch):
    """A faked CUDA OOM for micro-batches above 2 windows: the loop redoes the iteration at 2 x 4 instead of
    4 x 2, and the run is the one trained at 2 x 4 from the start."""
    import train
    from test_train import micro_config, rows, weights
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=6, lr_decay_iters=6, eval_interval=3)
    train.main([cfg_path, f"--out_dir='{tmp_path / 'by_hand'}'", '--batch_size=2', '--gradient_accumulation_steps=4'])
    fake_a_small_gpu(monkeypatch)
    train.main([cfg_path, f"--out_dir='{tmp_path / 'auto'}'"])
    assert rows(tmp_path / 'auto') == rows(tmp_path / 'by_hand')
    assert rows(tmp_path / 'auto', 'train') == rows(tmp_path / 'by_hand', 'train')
    a, b = weights(tmp_path / 'auto'), weights(tmp_path / 'by_hand')
    assert all(torch.equal(a[k], b[k]) for k in a)

class NotOnHost(torch.Tensor):
    """A CPU stand-in for a CUDA tensor where it matters to the report: numpy() refuses it, as it refuses a CUDA
    tensor, and cpu() is the way back. Ops on it give NotOnHost tensors (torch's subclass propagation)."""
    def numpy(self, *a, **k):
        raise TypeError("can't convert a not-on-host tensor to numpy (a CUDA tensor would say cuda:0): call .cpu() first")

    def cpu(self, *a, **k):
        return self.as_subclass(torch.Tensor)

def test_report_paths_take_an_index_on_the_device_not_the_host(gen_data):
    """The report's data-side paths with the index's buffers on a 'device' (the first H200 run crashed in
    data_baseline's is_hot.numpy() on CUDA): every label and key comes back through cpu(), none through numpy()."""
    from factory import load_index
    from engramlib.data import load_meta
    from report.databaseline import data_baseline, kn_share_rows, position_groups
    from factory import ModelConfig
    meta = load_meta(gen_data)
    index, _ = load_index(gen_data, meta, ModelConfig.from_args(memory='nine', hot_size=200))
    data = TokenData(gen_data, index.max_order - 1)
    starts = data.val_starts(32, 4)
    host = (data_baseline(data, index, starts, 32, meta['tokens']['vocab_size']), position_groups(data, index, starts, 32))
    for name, b in list(index.named_buffers()):
        index._buffers[name] = b.as_subclass(NotOnHost)
    with pytest.raises(TypeError, match='not-on-host'):            # the stand-in bites where a CUDA tensor would
        index(torch.as_tensor(data.windows('val', starts, 32)[0]), index.max_order - 1).is_hot.numpy()
    assert data_baseline(data, index, starts, 32, meta['tokens']['vocab_size']) == host[0]
    assert all(np.array_equal(a, b) for a, b in zip(position_groups(data, index, starts, 32), host[1]))
    kn_share_rows(data, index, 200, starts, 32)


def test_the_compiled_model_has_one_graph_for_training_and_one_for_eval_and_no_recompile_after(gen_data):
    """train.py compiles one model and evaluates with it (no_grad, eval mode, diag=True: a second graph, intended).
    dynamo's eager backend counts the frames: 1 after training, 2 after the first eval, still 2 after training and
    evaluating again (the H200 saw 'Recompiling ... grad_mode' once; a recompile per eval would cost seconds)."""
    from torch._dynamo.testing import CompileCounter
    from engramlib.metrics import evaluate
    torch._dynamo.reset()
    model = tiny_model(gen_data, 'nine')
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    data = TokenData(gen_data, 2)
    starts = data.val_starts(32, 4)
    frames = []
    for it in range(2):
        x, y, c = (torch.from_numpy(a) for a in data.windows('train', data.train_starts(0, it, range(2), 32), 32))
        compiled(x, y, prev=c, step=torch.tensor(it))[1].backward()
        frames.append(counter.frame_count)
        with torch.no_grad():
            evaluate(compiled, data, starts, 2, 'cpu', nullcontext(), (2, 3))
        frames.append(counter.frame_count)
    assert frames == [1, 2, 2, 2], frames

def test_deterministic_mode_sets_cublas_workspace_and_deterministic_algorithms_before_the_model(tmp_path, gen_data):
    """--deterministic=True: the flags a bit-exact CUDA resume needs are set by the time the model exists (the
    equality itself runs on a GPU: tests/test_cuda.py); off by default."""
    import subprocess
    import sys
    cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2)
    code = ("import os, sys, torch, train; cfg = train.default_config(); "
            "train.apply_config(cfg, sys.argv[1:], train.config_keys); train.Run(cfg); "
            "import torch._inductor.config as i; "
            "print(torch.are_deterministic_algorithms_enabled(), os.environ.get('CUBLAS_WORKSPACE_CONFIG'), i.deterministic)")
    env = {k: v for k, v in os.environ.items() if k != 'CUBLAS_WORKSPACE_CONFIG'}
    out = {flag: subprocess.run([sys.executable, '-c', code, cfg_path, f'--deterministic={flag}'], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=True).stdout.split() for flag in (True, False)}
    assert out[True] == ['True', ':4096:8', 'True'] and out[False] == ['False', 'None', 'False']


def test_each_compiled_model_runs_the_sdpa_kernel_its_run_chose(gen_data):
    """--sdpa_backend is entered inside the forward: two models compiled in one process (bench.py's side-by-side
    configs) each run their own kernel. Compiled first, math must not leak into the flash model's graph (a context
    around the compiled call would: dynamo does not guard on the SDPA flags, and both models share a graph)."""
    from torch.profiler import ProfilerActivity, profile
    torch._dynamo.reset()
    data = TokenData(gen_data, 2)
    x, y, c = (torch.from_numpy(a) for a in data.windows('train', np.array([0, 50]), 32))
    kernels = {}
    for backend in ('math', 'flash', 'auto'):
        model = tiny_model(gen_data, 'nine')
        model.sdpa_backend = backend
        compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
        compiled(x, y, prev=c)[1].backward()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            compiled(x, y, prev=c)[1].backward()
        kernels[backend] = {e.key for e in prof.key_averages()}
    flash = 'aten::_scaled_dot_product_flash_attention_for_cpu'
    assert flash not in kernels['math'] and flash in kernels['flash'] and flash in kernels['auto']

def test_the_run_sets_its_sdpa_backend_and_refuses_a_cuda_kernel_on_the_cpu(tmp_path, gen_data):
    cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    def run_with(*args):
        cfg = train.default_config()
        apply_config(cfg, [cfg_path, *args], train.config_keys)
        return train.Run(cfg)
    assert run_with("--sdpa_backend='math'").raw_model.sdpa_backend == 'math'
    assert run_with().raw_model.sdpa_backend == 'auto'
    with pytest.raises(train.ConfigError, match="--sdpa_backend='cudnn' is a CUDA kernel; on cpu use"):
        run_with("--sdpa_backend='cudnn'", "--device='cpu'")

def test_compile_modes_reach_torch_compile_and_cuda_graphs_refuse_what_they_cannot_do(tmp_path, gen_data, monkeypatch):
    """The mode reaches torch.compile (train.py and bench.py compile through system.compile_model); CUDA graphs
    (fixed addresses, a private memory pool) are refused with host tables and do not redo an out-of-memory step."""
    from engramlib import system
    modes = []
    compile_ = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda m, mode=None: modes.append(mode) or compile_(m, mode=mode))
    for mode in system.COMPILE_MODES:
        system.compile_model(torch.nn.Linear(2, 2), mode)
    assert modes == [None, 'max-autotune-no-cudagraphs', 'max-autotune', 'reduce-overhead']
    cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    for args, message in [(["--compile_mode='reduce-overhead'", "--engram_tables='host'", "--table_optimizer='rowwise'"],
                           "replays CUDA graphs"), (["--compile_mode='max-autotune'", '--compile=False'], '--compile=False')]:
        with pytest.raises(train.ConfigError, match=message):
            train.main([cfg_path, f"--out_dir='{tmp_path / 'refused'}'", *args])
    fake_a_small_gpu(monkeypatch)
    with pytest.raises(train.ConfigError, match="out of GPU memory at micro-batch 4 with --compile_mode='reduce-overhead'"):
        train.main([cfg_path, f"--out_dir='{tmp_path / 'graphs'}'", "--compile_mode='reduce-overhead'", '--compile=True'])

def test_a_bench_step_is_the_trainers_update_clip_included():
    """bench.py times the step train.py takes: after one bench step the weights equal a step by hand with the global
    clip at 1.0 and AdamW at train.py's defaults (the gradient norm at the init is above 1, so a step without the
    clip, bench's before, gives other weights)."""
    import copy
    import bench
    runs, batches = bench.build_runs('tiny', 'cpu', torch.float32, False, {'hash': bench.bench_config('hash')}, 1)[:2]
    r, b = runs['hash'], batches[0]
    ref = copy.deepcopy(r['model'])
    opt = torch.optim.AdamW([{'params': [p for p in ref.parameters() if p.dim() >= 2], 'weight_decay': 0.1},
                             {'params': [p for p in ref.parameters() if p.dim() < 2], 'weight_decay': 0.0}],
                            lr=6e-4, betas=(0.9, 0.95))
    ref(b[:, 2:-1], b[:, 3:], prev=b[:, :2])[1].backward()
    norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    opt.step()
    bench.train_step(r, batches, 0)
    assert norm > 1
    assert all(torch.equal(p, q) for p, q in zip(r['model'].parameters(), ref.parameters()))


def test_a_bench_config_name_is_its_memory_and_its_changes_and_each_change_reaches_the_run():
    """bench.py's side-by-side configs: 'nine_host_math' is Nine with host tables (row-wise AdamW) and the math
    kernel; each run setting lands where train.py puts it; unknown or meaningless names are refused in one line."""
    import bench
    assert bench.bench_config('nine_host_math') == {'memory': 'nine', 'engram_tables': 'host', 'table_optimizer': 'rowwise',
                                                    'sdpa_backend': 'math'}
    names = ('hash_plainhead_math', 'hash_rowwise', 'nine_host', 'baseline')
    runs = bench.build_runs('tiny', 'cpu', torch.float32, False, {n: bench.bench_config(n) for n in names}, 1)[0]
    assert [runs[n]['model'].sdpa_backend for n in names] == ['math', 'auto', 'auto', 'auto']
    assert [type(runs[n]['tables']).__name__ for n in names] == ['DeviceTables', 'DeviceTables', 'HostTables', 'DeviceTables']
    assert [any(g.get('rowwise') for g in runs[n]['opt'].param_groups) for n in names[:2]] == [False, True]
    assert runs['baseline']['cfg'].memory == 'none' and runs['hash_rowwise']['cfg'].memory == 'hash'
    for argv, message in [(['--configs', 'hash_fast'], "'hash_fast': a memory of baseline,hash,nine, then changes of"),
                          (['--configs', 'baseline_rowwise'], 'the baseline has no memory tables'),
                          (['--configs', 'hash_cudnn', '--device', 'cpu', '--rounds', '1'], 'the cudnn and efficient kernels CUDA')]:
        r = run(['bench.py', *argv], check=False)
        assert r.returncode != 0 and message in r.stderr and 'Traceback' not in r.stderr
