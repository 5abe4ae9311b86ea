"""
Speed, measured side by side in one process (never as a timed test).

  python bench.py                       # CPU: tiny configs + counting on 95M synthetic tokens + index/hash costs
  python bench.py --preset paper        # GPU: GPT-2 small, Hash-500K vs Nine-100/400K vs baseline (bf16, compile)
  python bench.py --preset parts        # the MD-mix model parts (configs/mdx) beside the standard parts, tiny shapes
  python bench.py --preset compute      # reversible blocks vs stored activations vs checkpointing; LSH attention vs SDPA

Training steps (forward + backward + clip + AdamW: the update through train.py's own code) of every config are
timed interleaved, round-robin, after warm-up; the median step is reported with tok/s, MFU against the device's
own peak, peak memory, the update's share of the step, and the ratios Nine/Hash and Hash/baseline. Synthetic
Zipf tokens and a synthetic hot tier built by prepare_fineweb's own counting code, so no data dir is needed.
"""
import argparse
import json
import os
import sys
import time
from contextlib import nullcontext

from configurator import HelpFormatter, parse_size

PAPER_VOCAB = 128_815           # DeepSeek-V3's tokenizer (the paper's); padded to 128,832 in the model
PRESETS = {
    # the tiny CPU config (configs/tiny.py) with small tables
    'tiny': dict(model=dict(n_layer=8, n_head=4, n_embd=64, block_size=64, engram_head_dim=16), batch_size=8,
                 hash=dict(table_size=24_096), nine=dict(hot_size=20_000, table_size=4096)),   # iso-parameter, as configs/tiny_hash.py
    # the tiny backbone with the paper's 128M-parameter tables: where the table optimizer dominates
    'tiny_paper_tables': dict(model=dict(n_layer=8, n_head=4, n_embd=64, block_size=64), batch_size=8,
                              hash=dict(table_size=500_000), nine=dict(hot_size=100_000, table_size=400_000)),
    # the paper's GPT-2 small (Table 1/2) at the paper's vocabulary: Hash-500K vs Nine-100/400K
    # (the paper's global batch of 16 x 1024 as one micro-batch: train.py's default split)
    'paper': dict(model=dict(), batch_size=16, vocab=PAPER_VOCAB, hash=dict(table_size=500_000), nine=dict(hot_size=100_000, table_size=400_000)),
}

# A timed config is named by its memory, then what it changes from the default run, joined by '_': hash, nine_rowwise,
# nine_host, hash_plainhead_cudnn... Its settings are ModelConfig's, plus the run settings build_runs applies as train.py.
MEMORY_KINDS = {'baseline': 'none', 'hash': 'hash', 'nine': 'nine'}
CHANGES = {'rowwise': {'table_optimizer': 'rowwise'},      # lazy row-wise AdamW on the tables
           'host': {'engram_tables': 'host', 'table_optimizer': 'rowwise'},      # the tables in host memory (engramlib/offload.py)
           'plainhead': {'loss_chunk': 0},                 # the loss through the whole logits (default on CUDA: chunked)
           'autotune': {'compile_mode': 'max-autotune-no-cudagraphs'}, 'cudagraphs': {'compile_mode': 'reduce-overhead'},
           # layers.SDPA_BACKENDS but 'auto' (spelled out: --help answers before torch is imported)
           **{b: {'sdpa_backend': b} for b in ('flash', 'cudnn', 'efficient', 'math')}}
RUN_DEFAULTS = {'table_optimizer': 'adamw', 'loss_chunk': -1, 'engram_tables': 'device', 'compile_mode': 'default',
                'sdpa_backend': 'auto'}
DEFAULT_CONFIGS = 'baseline,hash,nine,hash_rowwise,nine_rowwise'    # the plainhead ones differ on CUDA only
OFFLOAD_CONFIGS = 'nine,hash_rowwise,hash_host,nine_rowwise,nine_host'  # --preset offload: host tables vs device, same optimizer

def bench_config(name):
    """The settings of a config name (above); ValueError says what is unknown."""
    memory, *changes = name.split('_')
    unknown = [c for c in changes if c not in CHANGES]
    if memory not in MEMORY_KINDS or unknown:
        raise ValueError(f"{name!r}: a memory of {','.join(MEMORY_KINDS)}, then changes of {','.join(CHANGES)}, joined by '_'")
    if memory == 'baseline' and {'rowwise', 'host'} & set(changes):
        raise ValueError(f"{name!r}: the baseline has no memory tables to update row-wise or keep in host memory")
    return {'memory': MEMORY_KINDS[memory], **{k: v for c in changes for k, v in CHANGES[c].items()}}

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    p.add_argument('--preset', default=None, choices=sorted(PRESETS) + ['mdx', 'parts', 'compute', 'offload'],
                   help='default: paper on CUDA, tiny on CPU; mdx: the MD-mix inference ideas on --ckpt; '
                        'parts: the MD-mix model parts beside the standard ones (tiny shapes); compute: memory and '
                        'time of reversible blocks and LSH attention beside the standard ones; offload: host tables '
                        'against device tables (paper shapes on CUDA, tiny on CPU; --table_scale)')
    p.add_argument('--table_scale', type=int, default=1, help="--preset offload: the tables' slots times this (10: 10x "
                   "the paper's table budget)")
    p.add_argument('--ckpt', default='out/quickstart/tiny_nine_s0/ckpt.pt', help='the trained checkpoint --preset mdx reads')
    p.add_argument('--device', default='auto', help="'auto' (cuda if available) | cpu | cuda")
    p.add_argument('--steps', type=int, default=5, help='timed steps per config per round')
    p.add_argument('--rounds', type=int, default=6, help='interleaved rounds over the configs (0 = skip training)')
    p.add_argument('--count_tokens', default='95_000_000',
                   help='synthetic tokens for the n-gram counting benchmark, comma-separated sizes (0 = skip)')
    p.add_argument('--count_engines', default='numpy', help="counting engines to time, e.g. 'numpy,duckdb'")
    p.add_argument('--memory_limit', default='4GB', help='the duckdb engine\'s memory budget')
    p.add_argument('--count_data', default='iid', choices=('iid', 'text'),
                   help="synthetic tokens for counting: iid Zipf (nearly every 3-gram distinct) or text-like phrases")
    p.add_argument('--no_compile', action='store_true', help='no torch.compile on CUDA')
    p.add_argument('--configs', default=DEFAULT_CONFIGS, help=f"the training configs timed: a memory of {','.join(MEMORY_KINDS)}, "
                   f"then changes of {','.join(CHANGES)}, joined by '_' (e.g. hash_plainhead, nine_cudnn)")
    p.add_argument('--micro_batches', default='', help='CUDA: peak memory of one Hash and one Nine step per micro-batch, e.g. 8,16')
    p.add_argument('--head_rounds', type=int, default=5, help='rounds timing the head + loss: plain vs chunked (0 = skip)')
    p.add_argument('--profile', type=int, default=0, help='steps of each config under torch.profiler: top ops and the gap over the first config (0 = skip)')
    p.add_argument('--ckpt_steps', type=int, default=6, help='steps timed with and without one eval + checkpoint (0 = skip)')
    p.add_argument('--out', default='bench.json', help='all figures as JSON')
    a = p.parse_args(argv)
    try:
        a.configs = {name: bench_config(name) for name in a.configs.split(',')}
    except ValueError as e:
        p.error(f"--configs: {e}")
    if a.steps < 1 or a.table_scale < 1 or min(a.rounds, a.ckpt_steps, a.head_rounds, a.profile) < 0:
        p.error(f"--steps and --table_scale must be >= 1, --rounds, --ckpt_steps, --head_rounds and --profile >= 0 (got "
                f"{a.steps}, {a.table_scale}, {a.rounds}, {a.ckpt_steps}, {a.head_rounds}, {a.profile})")
    try:
        parse_size(a.memory_limit)
        if any(int(x.replace('_', '')) < 0 for x in a.count_tokens.split(',')) or any(int(b) < 1 for b in a.micro_batches.split(',') if b):
            raise ValueError
    except ValueError:
        p.error(f"--memory_limit must be a size like 4GB, --count_tokens and --micro_batches comma-separated counts "
                f"(got {a.memory_limit!r}, {a.count_tokens!r}, {a.micro_batches!r})")
    if a.device.startswith('cuda'):
        from engramlib.system import device_problem
        if device_problem(a.device):
            p.error(device_problem(a.device))
    return a

if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):   # before the heavy imports: help in a blink
    parse_args()

from engramlib import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import numpy as np
import torch
import torch.nn.functional as F

from engramlib import optim
from engramlib import counting
from factory import ModelConfig, build_model
from engram import NgramIndex, hash_multipliers, multiply_xor_hash, ngram_keys
from extensions.mdx import attention_lsh
from engramlib.offload import DeviceTables, HostTables
from engramlib.system import compile_model, device_peak_flops, resolve_device, resolve_loss_chunk
from engramlib.fsafe import DataError, save_json
from tools.bench_counting import synth_tokens, time_counting_sizes

OPT = {k: o.default for k, o in optim.OPTIM.options.items()}     # AdamW and the clip at train.py's defaults

def new_optimizer(model, device_type, table_optimizer='adamw'):
    return optim.configure_optimizers(model, OPT['weight_decay'], OPT['learning_rate'], (OPT['beta1'], OPT['beta2']),
                                      device_type, table_optimizer)

VOCAB = 50257                   # GPT-2's: the tiny presets
# the MD-mix model parts (configs/mdx) beside the standard ones, on the tiny backbone without memory (and tiny Nine,
# with and without the gate credit loss's extra forward)
PARTS = {name: {'memory': 'none', **kw} for name, kw in {
    'tied_mlp': {}, 'untied': {'embedding': 'untied'}, 'lowrank': {'embedding': 'lowrank', 'embed_rank': 8},
    'mihe': {'embedding': 'mihe', 'embed_buckets': 6288}, 'mihe_mulxor': {'embedding': 'mihe', 'embed_buckets': 6288, 'embed_hash': 'mulxor'},
    'mihe_learned_seeds': {'embedding': 'mihe', 'embed_buckets': 6288, 'embed_seed_choices': 4},
    'moe_hash': {'ffn': 'moe'}, 'moe_hash2': {'ffn': 'moe', 'moe_choices': 2, 'moe_bias_rate': 1e-3},
    'moe_balanced': {'ffn': 'moe', 'moe_router': 'balanced'}, 'moe_switch': {'ffn': 'moe', 'moe_router': 'switch', 'moe_bias_rate': 1e-3},
    'pkm_seeded': {'ffn': 'pkm', 'pkm_subkeys': 90}, 'pkm_learned': {'ffn': 'pkm', 'pkm_subkeys': 90, 'pkm_keys': 'learned'},
    'nine': {'memory': 'nine'}, 'nine_gate_credit': {'memory': 'nine', 'gate_credit': 0.1},
    'reversible': {'block': 'reversible'}, 'lsh': {'attention': 'lsh', 'lsh_bucket_size': 8, 'lsh_window': 8},
    'sketch': {'attention': 'sketch'}, 'bucket': {'attention': 'bucket'}}.items()}

def synth_index(tokens, vocab, n_hot, orders=(2, 3)):
    """Identity canonical map and hot tiers = the top-n_hot n-grams of the synthetic stream."""
    canon = np.arange(vocab + 1, dtype=np.int64)
    counts = counting.count_numpy(tokens, canon, list(orders), max(orders), progress=False)
    hot = {}
    for o in orders:
        keys = np.sort(counting.top_n(*counts[o], n_hot)[0])
        hot[o] = (torch.from_numpy(keys), torch.arange(len(keys)))
    return NgramIndex(canon, hot, orders)

def setup(preset, device, dtype, n_batches):
    """Synthetic stream, its index (hot tier of the preset's N_hot), autocast, and n_batches batches of
    windows with their 2 tokens of n-gram context: (B, 2 + T + 1) each."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    vocab = p.get('vocab', VOCAB)
    tokens = synth_tokens(2_000_000, vocab)
    index = synth_index(tokens, vocab, p['nine']['hot_size'])
    B, T = p['batch_size'], p['model'].get('block_size', 1024)
    device_type = 'cuda' if device.startswith('cuda') else 'cpu'
    autocast = torch.autocast(device_type, dtype=dtype) if device_type == 'cuda' else nullcontext()
    starts = np.random.default_rng(0).integers(2, len(tokens) - T - 1, size=(n_batches, B))
    batches = [torch.from_numpy(np.stack([tokens[s - 2:s + T + 1] for s in st]).astype(np.int64)).to(device) for st in starts]
    return p, tokens, index, B, T, device_type, autocast, batches

def build_runs(preset, device, dtype, compile, configs, n_batches):
    """Each config's model (seed 0), optimizer and compiled forward on the preset's synthetic batches."""
    p, tokens, index, B, T, device_type, autocast, batches = setup(preset, device, dtype, n_batches)
    vocab = p.get('vocab', VOCAB)
    index.register_buffer('unigram', torch.bincount(torch.from_numpy(tokens.astype(np.int64)), minlength=vocab))  # balanced MoE
    runs = {}
    for name, settings in configs.items():
        torch.manual_seed(0)
        run = {k: settings.get(k, d) for k, d in RUN_DEFAULTS.items()}      # run settings, applied as train.py does
        settings = {k: v for k, v in settings.items() if k not in run}
        cfg = ModelConfig.from_args(vocab_size=-(-vocab // 64) * 64, **{**p['model'], **p.get(settings['memory'], {}), **settings})
        model = build_model(cfg, index)
        host = run['engram_tables'] == 'host'
        tables = HostTables(model, pin=device_type == 'cuda') if host else DeviceTables(run['table_optimizer'])
        model.to(device)
        model.loss_chunk = resolve_loss_chunk(run['loss_chunk'], device_type)
        model.sdpa_backend = run['sdpa_backend']
        opt = new_optimizer(model, device_type, run['table_optimizer'])
        fwd = compile_model(model, run['compile_mode']) if compile else model
        runs[name] = dict(model=model, fwd=fwd, opt=opt, times=[], opt_times=[], cfg=cfg, autocast=autocast, device_type=device_type,
                          tables=tables, cpu_batches=[b.cpu() for b in batches] if host else None, table_s=[])
    return runs, batches, B, T

def train_step(r, batches, i):
    """One training step of run r on batches[i] (B, 2 + T + 1 each): (step seconds, the update's seconds: the clip
    and AdamW through train.py's own optim.clip_and_step, then the tables' update). The tables at train.py's points
    (offload.py): host tables prefetch the next batch's rows during the step, update its rows and stage the next
    after it; device tables do nothing there."""
    sync = torch.cuda.synchronize if r['device_type'] == 'cuda' else (lambda: None)
    batch, tables = batches[i % len(batches)], r['tables']
    x, y, c = batch[:, 2:-1], batch[:, 3:], batch[:, :2]
    dev = batch.device
    def windows(j):                     # batch j's (x, prev) on the CPU: the rows host tables stage
        b = r['cpu_batches'][j % len(r['cpu_batches'])]
        return [(b[:, 2:-1], b[:, :2])]
    if i == 0:                          # the first step: nothing was prefetched for it
        tables.start(i, windows, dev)
    t0 = time.perf_counter()
    with r['autocast']:
        _, loss, _ = r['fwd'](x, y, prev=c)
    loss.backward()
    t = time.perf_counter()
    tables.after_backward(i + 1, windows, dev)
    table_s = time.perf_counter() - t
    sync()
    t1 = time.perf_counter()
    optim.clip_and_step(r['opt'], tables, r['model'], r['fwd'], OPT)
    t = time.perf_counter()
    tables.after_step(OPT['learning_rate'], OPT['weight_decay'], (OPT['beta1'], OPT['beta2']), dev)
    table_s += time.perf_counter() - t
    sync()
    t2 = time.perf_counter()
    r['table_s'].append(table_s)
    return t2 - t0, t2 - t1

def warm_up(r, batches, steps=3):
    """The first steps of run r (compilation, the optimizer's state); on CUDA, the peak memory of this config alone
    (bytes): its weights and buffers plus what its steps allocated above what was allocated before (the other
    configs' models, resident beside it, are not counted)."""
    cuda = r['device_type'] == 'cuda'
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    for j in range(steps):
        train_step(r, batches, j)
    if not cuda:
        return None
    own = sum(t.numel() * t.element_size() for t in (*r['model'].parameters(), *r['model'].buffers()) if t.is_cuda)
    return own + torch.cuda.max_memory_allocated() - before

def time_training(preset, device, steps, rounds, compile, dtype, configs):
    runs, batches, B, T = build_runs(preset, device, dtype, compile, configs, steps * rounds + 3)
    for r in runs.values():        # warm-up (and compilation) outside the timed rounds
        r['peak_bytes'] = warm_up(r, batches)
    for rnd in range(rounds):      # interleaved: every config sees the same machine state (and the same batches)
        for r in runs.values():
            for s in range(steps):
                dt, dto = train_step(r, batches, 3 + rnd * steps + s)
                r['times'].append(dt)
                r['opt_times'].append(dto)
    peak = device_peak_flops(device)
    out = {}
    for name, r in runs.items():
        dt = float(np.median(r['times']))
        mfu = r['model'].estimate_mfu(B * T, dt, peak)
        out[name] = {'ms_per_step': dt * 1000, 'tok_per_s': B * T / dt, 'mfu': None if np.isnan(mfu) else mfu,
                     'optimizer_share': float(np.median(r['opt_times'])) / dt,
                     'params': r['model'].param_counts()}
        if r['peak_bytes'] is not None:
            out[name]['peak_mem_gb'] = r['peak_bytes'] / 1e9
        c = r['tables'].summary().get('host_tables')
        if c is not None:
            out[name]['host_tables'] = {'table_ms_per_step': float(np.median(r['table_s'])) * 1000,
                                        **{f'{k}_per_step': c[k] / c['steps'] for k in ('rows_staged', 'rows_shared', 'rows_hot', 'rows_updated',
                                                                                      'bytes_in', 'bytes_out')},
                                        'hot_lookup_share': c['hot_lookups'] / max(1, c['lookups'])}
    if {'nine', 'hash'} <= set(out):
        out['ratio_nine_over_hash_tok_per_s'] = out['nine']['tok_per_s'] / out['hash']['tok_per_s']
    if {'hash', 'baseline'} <= set(out):
        out['ratio_hash_over_baseline_step_time'] = out['hash']['ms_per_step'] / out['baseline']['ms_per_step']
    out['ratio_host_over_device_step_time'] = {m: out[f'{m}_host']['ms_per_step'] / out[f'{m}_rowwise']['ms_per_step']
                                               for m in ('hash', 'nine') if {f'{m}_rowwise', f'{m}_host'} <= set(out)}
    # each changed config against its memory alone (hash_rowwise / hash, nine_plainhead / nine, hash_cudnn / hash, ...)
    out['ratio_over_memory_alone_step_time'] = {n: out[n]['ms_per_step'] / out[n.split('_')[0]]['ms_per_step']
                                                for n in runs if '_' in n and n.split('_')[0] in runs}
    return out

def profile_steps(preset, device, dtype, compile, configs, steps, top=12):
    """torch.profiler over `steps` training steps of each config (after 3 warm-up steps): the top ops by self time
    (CUDA kernels on a GPU, CPU ops on a CPU) with their share of the step, and each config's extra time over the
    first config by op: where the step goes, and where Engram's share of it goes."""
    from torch.profiler import ProfilerActivity, profile
    runs, batches, B, T = build_runs(preset, device, dtype, compile, configs, steps + 3)
    cuda = device.startswith('cuda')
    attr = 'self_device_time_total' if cuda else 'self_cpu_time_total'
    out = {}
    for name, r in runs.items():
        warm_up(r, batches)
        with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
            for j in range(3, len(batches)):
                train_step(r, batches, j)
        ms = {e.key: getattr(e, attr) / 1000 / steps for e in prof.key_averages() if getattr(e, attr) > 0}
        total = sum(ms.values())
        out[name] = {'ms_per_step': total, 'ops': {k: v for k, v in sorted(ms.items(), key=lambda kv: -kv[1])}}
    first = next(iter(out))
    for name in list(out)[1:]:
        a, b = out[first]['ops'], out[name]['ops']
        gap = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b)}
        out[name][f'gap_over_{first}'] = dict(sorted(gap.items(), key=lambda kv: -abs(kv[1]))[:top])
    for r in out.values():
        r['top'] = {k: (v, v / r['ms_per_step']) for k, v in list(r['ops'].items())[:top]}
    return out

def print_profile(prof):
    for name, r in prof.items():
        print(f"{name}: {r['ms_per_step']:.1f} ms of profiled op time per step; top ops: " +
              ', '.join(f"{k} {v:.2f} ms ({100 * share:.0f}%)" for k, (v, share) in r['top'].items()))
        gap = next((v for k, v in r.items() if k.startswith('gap_over_')), None)
        if gap:
            print(f"  {name} minus the first config, by op: " + ', '.join(f"{k} {v:+.2f} ms" for k, v in gap.items()))

def peak_memory(preset, device, dtype, batch_sizes, memories=('hash', 'nine')):
    """CUDA: the peak memory (GB) of one eager training step (forward, backward, clip, AdamW) per micro-batch size,
    or 'OOM'; what decides the micro-batch that fits (train.py halves it on an out-of-memory error)."""
    p, tokens, index, _, T, device_type, autocast, (batch,) = setup(preset, device, dtype, 1)
    vocab, out = p.get('vocab', VOCAB), {}
    for m in memories:
        for B in batch_sizes:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                model = build_model(ModelConfig.from_args(vocab_size=-(-vocab // 64) * 64, memory=m, **p['model'], **p[m]), index).to(device)
                model.loss_chunk = resolve_loss_chunk(-1, device_type)
                opt = new_optimizer(model, device_type)
                b = batch[:1].expand(B, -1)
                with autocast:
                    loss = model(b[:, 2:-1], b[:, 3:], prev=b[:, :2])[1]
                loss.backward()
                optim.clip_and_step(opt, DeviceTables('adamw'), model, model, OPT)
                torch.cuda.synchronize()
                out[f'{m}_micro_batch_{B}_gb'] = torch.cuda.max_memory_allocated() / 1e9
            except torch.cuda.OutOfMemoryError:
                out[f'{m}_micro_batch_{B}_gb'] = 'OOM'
            model = opt = loss = None
    return out

def time_head(preset, device, dtype, rounds):
    """The head and its loss alone (x @ W^T, cross-entropy, backward) at the preset's rows, width and vocabulary: the
    plain path beside the chunked one (engramlib/linear_ce.py) at chunks of 1/4 and 1/16 of the rows, interleaved round-robin;
    median ms and, on CUDA, the peak memory above the inputs."""
    from engramlib.linear_ce import chunked_cross_entropy
    p = PRESETS[preset]
    cfg = ModelConfig.from_args(vocab_size=-(-p.get('vocab', VOCAB) // 64) * 64, **p['model'])
    rows, C, V = p['batch_size'] * cfg.block_size, cfg.n_embd, cfg.vocab_size
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(rows, C, device=device, generator=g, requires_grad=True)
    W = (0.02 * torch.randn(V, C, device=device, generator=g)).requires_grad_()
    t = torch.randint(0, V, (rows,), device=device, generator=g)
    cuda = device.startswith('cuda')
    autocast = torch.autocast('cuda', dtype=dtype) if cuda else nullcontext()
    paths = {'plain': lambda: F.cross_entropy(x @ W.t(), t, reduction='none').mean()}
    for k in (4, 16):
        paths[f'chunk {rows // k}'] = lambda c=rows // k: chunked_cross_entropy(x, W, t, c)[1]
    fused, unavailable = fused_heads(x, W, t, dtype) if cuda else ({}, {})
    paths.update(fused)
    times, peak, loss_value = {n: [] for n in paths}, {}, {}
    for r in range(rounds + 1):                          # round 0: warm-up
        for name, loss in list(paths.items()):
            if cuda:
                torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            try:
                with autocast:
                    l = loss()
                l.backward()
            except Exception as e:          # another package's kernel that fails here is reported, not the whole bench
                if name not in fused:
                    raise
                unavailable[name] = f'{type(e).__name__}: {e}'[:300]
                del paths[name], times[name]
                continue
            if cuda:
                torch.cuda.synchronize(); peak[name] = (torch.cuda.max_memory_allocated() - base) / 1e9
            if r:
                times[name].append(time.perf_counter() - t0)
            loss_value[name] = float(l.detach())
            x.grad = W.grad = None
    ms = {n: 1000 * float(np.median(v)) for n, v in times.items()}
    return {'rows': rows, 'width': C, 'vocab': V, 'ms': ms, 'ratio_over_plain': {n: v / ms['plain'] for n, v in ms.items()},
            'loss': loss_value, **({'peak_gb': peak, 'unavailable': unavailable} if cuda else {})}

def fused_heads(x, W, t, dtype):
    """CUDA: the fused linear + cross-entropy kernels of Liger-Kernel and cut-cross-entropy (Triton; issue 40 asks to
    compare them with engramlib/linear_ce.py), where installed (`pip install --no-deps` their wheels: the GPU image has Triton),
    on the same bf16 inputs: ({name: loss function}, {name: why not})."""
    paths, unavailable = {}, {}
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        liger = LigerFusedLinearCrossEntropyLoss()
        paths['liger'] = lambda: liger(W.to(dtype), x.to(dtype), t)
    except ImportError as e:
        unavailable['liger'] = str(e)
    try:
        from cut_cross_entropy import linear_cross_entropy
        paths['cut-cross-entropy'] = lambda: linear_cross_entropy(x.to(dtype), W.to(dtype), t)
    except ImportError as e:
        unavailable['cut-cross-entropy'] = str(e)
    return paths, unavailable

def print_training(tr, names):
    print(f"{'config':>18} {'ms/step':>9} {'tok/s':>10} {'MFU':>6} {'optim share':>12} {'params':>12}")
    for name in names:
        r = tr[name]
        print(f"{name:>18} {r['ms_per_step']:>9.1f} {r['tok_per_s']:>10,.0f} {('%.1f%%' % (100*r['mfu'])) if r['mfu'] else '–':>6} "
              f"{100*r['optimizer_share']:>11.1f}% {r['params']['total']:>12,}")

class SyntheticVal:
    """The synthetic stream as metrics.evaluate reads a data dir (windows with their n-gram context)."""

    def __init__(self, tokens):
        self.tokens = tokens.astype(np.int64)

    def windows(self, split, starts, T):
        w = np.stack([self.tokens[s:s + T + 3] for s in starts])
        return w[:, 2:-1], w[:, 3:], w[:, :2]

def time_checkpointing(preset, device, dtype, steps, interval=250, val_windows=400):
    """What evals and checkpoints every `interval` iters cost against the loop alone (Nine): K steps
    alone, then an eval, a checkpoint save (snapshot to CPU, background write) and the same K steps,
    the write overlapping them; the difference is the cost of one eval+save. Also the old blocking save."""
    import tempfile
    from engramlib.checkpoint import CKPT_VERSION, CheckpointWriter, save_checkpoint
    from engramlib.metrics import evaluate
    p, tokens, index, B, T, device_type, autocast, (batch,) = setup(preset, device, dtype, 1)
    cfg = ModelConfig.from_args(vocab_size=-(-p.get('vocab', VOCAB) // 64) * 64, memory='nine', **p['model'], **p['nine'])
    model = build_model(cfg, index).to(device)
    opt, tables = new_optimizer(model, device_type), DeviceTables('adamw')
    sync = torch.cuda.synchronize if device_type == 'cuda' else (lambda: None)
    def run_steps(k):
        for _ in range(k):
            with autocast:
                loss = model(batch[:, 2:-1], batch[:, 3:], prev=batch[:, :2])[1]
            loss.backward()
            optim.clip_and_step(opt, tables, model, model, OPT)
        sync()
    run_steps(2)                                      # warm-up (and AdamW state)
    state = lambda: {'format_version': CKPT_VERSION, 'model': model.state_dict(), 'optimizer': opt.state_dict()}
    with tempfile.TemporaryDirectory(dir='.') as d:
        path, writer = os.path.join(d, 'ckpt.pt'), CheckpointWriter()
        writer.save(path, state())                    # steady state: the writer's CPU buffers exist
        writer.wait()
        t0 = time.perf_counter(); run_steps(steps); loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate(model, SyntheticVal(tokens), np.arange(val_windows) * T, B, device, autocast, (2, 3))
        t_eval = time.perf_counter() - t0
        writer.save(path, state())
        t_snapshot = time.perf_counter() - t0 - t_eval
        run_steps(steps)
        writer.wait()
        with_save = time.perf_counter() - t0
        t0 = time.perf_counter(); save_checkpoint(path, state()); blocking = time.perf_counter() - t0
    step = loop / steps
    overhead = with_save - loop
    return {'step_s': step, 'eval_s': t_eval, 'snapshot_s': t_snapshot, 'eval_save_overhead_s': overhead,
            'blocking_save_s': blocking, 'ckpt_gb': sum(v.numel() * v.element_size() for v in model.state_dict().values()) * 3 / 1e9,
            f'ratio_at_interval_{interval}': interval * step / (interval * step + overhead),
            f'ratio_at_interval_{interval}_blocking_save': interval * step / (interval * step + t_eval + blocking)}

def timed_ms(fn, device, reps=3):
    """The mean time of reps calls after one warm-up call, in ms (synchronized on CUDA)."""
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps * 1e3

def time_reversible(device, B=8, T=256, C=256):
    """Issue 18 part 1: reversible blocks vs the prenorm blocks storing every activation vs
    torch.utils.checkpoint per block (reentrant, so what it saves is seen), vs depth: the bytes autograd
    saves, the peak memory on CUDA, the forward + backward time; and how exactly the stack inverts itself
    (fp32, bf16 autocast, bf16 weights)."""
    from torch.utils.checkpoint import checkpoint
    from layers import NO_NOISE
    from extensions.mdx import reversible
    from model import GPT, ForwardPass
    def checkpointed(blocks, x, fwd):
        for block in blocks:
            x = checkpoint(block, x, fwd, use_reentrant=True)
        return x
    model_of = lambda n_layer, block: GPT(ModelConfig.from_args(vocab_size=512, n_layer=n_layer, n_head=4, n_embd=C, block_size=T, block=block, memory='none')).to(device)
    out = {'memory_time': [], 'inverse_rel_error': []}
    x = torch.randint(0, 512, (B, T), device=device)
    for n_layer in (2, 4, 8, 16):
        for kind in ('prenorm', 'checkpoint', 'reversible'):
            torch.manual_seed(0)
            model = model_of(n_layer, 'reversible' if kind == 'reversible' else 'prenorm')
            if kind == 'checkpoint':
                model.stack = checkpointed
            if device.startswith('cuda'):
                torch.cuda.synchronize(), torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if device.startswith('cuda') else 0
            saved = reversible.saved_activation_bytes(lambda: model(x, x)[1], model.parameters())[1]
            row = {'n_layer': n_layer, 'kind': kind, 'saved_mb': saved / 2**20,
                   'step_ms': timed_ms(lambda: model(x, x)[1].backward(), device)}
            if device.startswith('cuda'):
                row['peak_mb'] = (torch.cuda.max_memory_allocated() - base) / 2**20
            out['memory_time'].append(row)
            print(f"  {kind:10s} n_layer {n_layer:2d}: saved {row['saved_mb']:7.1f} MB, fwd+bwd {row['step_ms']:7.1f} ms", flush=True)
        h = torch.randn(B, T, C, device=device)
        errors = {}
        for prec in ('fp32', 'autocast_bf16', 'bf16'):
            torch.manual_seed(0)
            model = model_of(n_layer, 'reversible')
            model = model.bfloat16() if prec == 'bf16' else model
            fwd = ForwardPass(model, x, None, NO_NOISE)
            fwd.memory = {}
            with torch.no_grad(), torch.autocast(device.split(':')[0], dtype=torch.bfloat16, enabled=prec == 'autocast_bf16'):
                x1 = x2 = h.to(next(model.parameters()).dtype)
                for block in model.transformer.h:
                    x1, x2, _ = block(x1, x2, fwd)
                for block in reversed(model.transformer.h):
                    x1, x2 = block.inverse(x1, x2, fwd)
            errors[prec] = float(torch.maximum((x1.float() - h).abs(), (x2.float() - h).abs()).max() / h.abs().max())
        out['inverse_rel_error'].append({'n_layer': n_layer, **errors})
        print(f"  inverse of {n_layer} blocks, max error / max |x|: " + ', '.join(f"{k} {v:.1e}" for k, v in errors.items()), flush=True)
    return out

@torch.no_grad()
def lsh_quality(q, k, v, proj, c, w, top=8):
    """Recall of each query's `top` best past keys among the pairs LSH met, the share of causal pairs met,
    and the output's relative error vs causal attention."""
    T, H = q.size(2), q.size(1)
    y, found = attention_lsh.lsh_attention(q, k, v, proj, c, w, pairs=True)
    met = attention_lsh.attended(T, w, found, q.device)
    s = (q @ k.transpose(-1, -2)).masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float('-inf'))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    return {'recall_top8': float(met[..., top:, :].gather(-1, s[..., top:, :].topk(top, -1).indices).float().mean()),
            'pairs_share': float(met.float().sum() / (H * T * (T + 1) / 2)),
            'rel_error': float(((y - full).norm(dim=-1) / full.norm(dim=-1)).mean())}

def time_lsh(device, H=4, d=64, c=64, w=64, rounds=2):
    """Issue 18 part 2: LSH attention vs SDPA (causal), T = 1K..16K: forward and forward + backward time,
    and at T <= 4K lsh_quality on iid Gaussian and on clustered queries and keys (64 centers)."""
    proj = torch.randn(rounds, d, attention_lsh.n_bits(16384 // c), generator=torch.Generator().manual_seed(0)).to(device)
    out = []
    for T in (1024, 2048, 4096, 8192, 16384):
        g = torch.Generator().manual_seed(T)
        centers = torch.randn(64, d, generator=g) * 2
        data = {'gaussian': [torch.randn(1, H, T, d, generator=g) for _ in range(3)],
                'clustered': [centers[torch.randint(0, 64, (1, H, T), generator=g)] + 0.5 * torch.randn(1, H, T, d, generator=g)
                              for _ in range(2)] + [torch.randn(1, H, T, d, generator=g)]}
        q, k, v = (t.to(device).clone().requires_grad_() for t in data['gaussian'])
        lsh = lambda: attention_lsh.lsh_attention(q, k, v, proj, c, w)[0]
        sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        row = {'T': T, 'sdpa_fwd_ms': timed_ms(lambda: sdpa().detach(), device), 'lsh_fwd_ms': timed_ms(lambda: lsh().detach(), device),
               'sdpa_fwd_bwd_ms': timed_ms(lambda: sdpa().sum().backward(), device),
               'lsh_fwd_bwd_ms': timed_ms(lambda: lsh().sum().backward(), device)}
        row.update({name: lsh_quality(*(t.to(device) for t in qkv), proj, c, w) for name, qkv in data.items() if T <= 4096})
        out.append(row)
        print(f"  T {T:5d}: fwd SDPA {row['sdpa_fwd_ms']:8.1f} ms, LSH {row['lsh_fwd_ms']:8.1f} ms; fwd+bwd SDPA "
              f"{row['sdpa_fwd_bwd_ms']:8.1f} ms, LSH {row['lsh_fwd_bwd_ms']:8.1f} ms" +
              ''.join(f"; {n}: recall@8 {row[n]['recall_top8']:.3f}, pairs {row[n]['pairs_share']:.3f}, error {row[n]['rel_error']:.3f}"
                      for n in data if n in row), flush=True)
    return out

def time_index(device, n_pos=1 << 18, reps=10):
    """Per-token cost of the memory index: keys, hashes (mulxor vs mdmix), hot lookup."""
    import mdmix
    tokens = synth_tokens(2_000_000, 50257, seed=2)
    index = synth_index(tokens, 50257, 100_000).to(device)
    x = torch.from_numpy(tokens[:n_pos + 2].astype(np.int64)).to(device)[None]
    mult = hash_multipliers(0, 2, 2, 3).to(device)

    bench = lambda fn: timed_ms(fn, device, reps) * 1e6 / n_pos    # ns per position
    keys = ngram_keys(index.canonical[x], 3, 2)
    return {'ns_per_position': {
        'keys_and_hot_lookup': bench(lambda: index(x, 2)),
        'hash_mulxor_2heads': bench(lambda: multiply_xor_hash(keys, 3, mult[1], 400_000)),
        'hash_mdmix_2heads': bench(lambda: mdmix.mdmix_hash(keys, mult[1, :, 0], 400_000)),
    }}

def paper_state(memory, vocab=PAPER_VOCAB):
    """A real paper-shape training state on the CPU: GPT-2 small at the paper's padded vocabulary with the
    128M-parameter tables, AdamW moments filled by one step (what ckpt.pt holds at paper scale)."""
    p = PRESETS['paper']
    index = synth_index(synth_tokens(200_000, vocab), vocab, p['nine']['hot_size'])
    cfg = ModelConfig.from_args(vocab_size=-(-vocab // 64) * 64, memory=memory, **p['model'], **p[memory])
    model = build_model(cfg, index)
    opt = new_optimizer(model, 'cpu')
    for q in model.parameters():
        q.grad = torch.full_like(q, 1e-3)
    opt.step()
    return model, opt

def time_ckpt_budget(memory='nine', step_s=0.058, intervals=(250, 500, 1000), saves=3):
    """The loop's time lost to checkpointing at paper shapes: a GPU step simulated by a sleep of step_s (the
    paper's 16 x 1024 tokens at ~280K tok/s), train.py's CheckpointWriter saving the real state every
    `interval` iters to this machine's disk. Per interval: the lost fraction of the loop's wall time, the
    seconds each save() blocked the loop (the copy, and any wait for the previous write) and each background
    write's seconds; and the file's size."""
    import tempfile
    from engramlib.checkpoint import CKPT_VERSION, CheckpointWriter
    model, opt = paper_state(memory)
    state = lambda it: {'format_version': CKPT_VERSION, 'iter_num': it, 'model': model.state_dict(),
                        'optimizer': opt.state_dict(), 'model_args': model.config.args()}
    out = {'memory': memory, 'step_s': step_s, 'params': model.param_counts()['total'], 'intervals': {}}
    with tempfile.TemporaryDirectory(dir='.') as d:
        path, writer, writes = os.path.join(d, 'ckpt.pt'), CheckpointWriter(), []
        timed_write = writer._write
        def write(*args):
            t = time.perf_counter()
            timed_write(*args)
            writes.append(time.perf_counter() - t)
        writer._write = write
        writer.save(path, state(0))                   # steady state: the writer's CPU buffers exist
        writer.wait()
        out['ckpt_gb'] = os.path.getsize(path) / 1e9
        for interval in intervals:
            blocked, writes[:] = [], []
            t0 = time.perf_counter()
            for it in range(1, saves * interval + 1):
                time.sleep(step_s)
                if it % interval == 0:
                    t = time.perf_counter()
                    writer.save(path, state(it))
                    blocked.append(time.perf_counter() - t)
            loop = time.perf_counter() - t0
            writer.wait()
            ideal = saves * interval * step_s
            out['intervals'][interval] = {'lost_fraction': (loop - ideal) / loop, 'save_blocked_s': blocked,
                                          'write_s': list(writes)}
            print(f"ckpt every {interval} iters ({interval * step_s:.1f} s of GPU steps): {100 * (loop - ideal) / loop:.2f}% "
                  f"of the loop lost; save() blocked {', '.join(f'{b:.2f}' for b in blocked)} s; writes "
                  f"{', '.join(f'{w:.1f}' for w in writes)} s ({out['ckpt_gb']:.2f} GB)", flush=True)
    return out

def refuse_cuda_only_changes(configs, cuda, no_compile):
    """Checked after the device resolves (parse_args cannot know it): the changes that only run on CUDA."""
    idle = [n for n, c in configs.items() if c.get('sdpa_backend') in ('cudnn', 'efficient') and not cuda
            or c.get('compile_mode', 'default') != 'default' and (no_compile or not cuda)]
    if idle:
        sys.exit(f"error: --configs {','.join(idle)}: the compile modes need CUDA and compiling (no --no_compile), the "
                 f"cudnn and efficient kernels CUDA; drop those changes here")

def main():
    a = parse_args()
    a.device = resolve_device(a.device)
    cuda = a.device.startswith('cuda')
    preset = a.preset or ('paper' if cuda else 'tiny')
    dtype = torch.bfloat16 if cuda else torch.float32
    refuse_cuda_only_changes(a.configs, cuda, a.no_compile)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    res = {'device': torch.cuda.get_device_name(a.device) if cuda else f'cpu ({torch.get_num_threads()} threads)',
           'torch': torch.__version__, 'preset': preset}
    print(f"device: {res['device']}, preset {preset}, torch {res['torch']}", flush=True)
    if preset == 'offload':
        res['offload'] = time_offload(a, cuda, dtype)
        save_json(a.out, res)
        return
    if preset in ('mdx', 'parts', 'compute'):
        if preset == 'mdx':
            from tools.bench_mdx import time_mdx
            res['mdx'] = r = time_mdx(a.ckpt, a.device)
            print(json.dumps(r, indent=1))
        elif preset == 'compute':
            res['compute'] = {'reversible': time_reversible(a.device), 'lsh': time_lsh(a.device)}
        else:
            res['parts'] = tr = time_training('tiny', a.device, a.steps, a.rounds, cuda and not a.no_compile, dtype, PARTS)
            print_training(tr, PARTS)
        save_json(a.out, res)           # temp then rename: a link planted at --out is replaced, never written through
        return
    configs = a.configs      # what --rounds times and --profile profiles
    if a.rounds:
        res['training'] = tr = time_training(preset, a.device, a.steps, a.rounds, cuda and not a.no_compile, dtype, configs)
        print_training(tr, configs)
        print(', '.join(f"{k} = {tr[k]:.3f}" for k in ('ratio_nine_over_hash_tok_per_s', 'ratio_hash_over_baseline_step_time') if k in tr))
        if tr['ratio_over_memory_alone_step_time']:
            print('step time over the memory alone: ' + ', '.join(f"{n} {v:.3f}" for n, v in tr['ratio_over_memory_alone_step_time'].items()))
        res['index'] = time_index(a.device)
        print('index, ns per position: ' + ', '.join(f"{k} {v:.1f}" for k, v in res['index']['ns_per_position'].items()), flush=True)
    if a.profile:
        res['profile'] = prof = profile_steps(preset, a.device, dtype, cuda and not a.no_compile, configs, a.profile)
        print_profile(prof)
    if a.head_rounds:
        res['head'] = h = time_head(preset, a.device, dtype, a.head_rounds)
        print(f"head + cross-entropy, {h['rows']:,} rows x {h['width']} -> {h['vocab']:,}: " + ', '.join(
            f"{n} {v:.1f} ms ({h['ratio_over_plain'][n]:.2f}x)" + (f", peak {h['peak_gb'][n]:.2f} GB" if 'peak_gb' in h else '')
            for n, v in h['ms'].items()), flush=True)
        for n, why in h.get('unavailable', {}).items():
            print(f"  {n}: not timed ({why})")
    if a.micro_batches and cuda:
        res['peak_memory'] = pm = peak_memory(preset, a.device, dtype, [int(b) for b in a.micro_batches.split(',')])
        print('peak memory of one step: ' + ', '.join(f"{k} {v if isinstance(v, str) else f'{v:.1f} GB'}" for k, v in pm.items()), flush=True)
    if a.ckpt_steps:
        res['checkpointing'] = c = time_checkpointing('paper' if cuda else 'tiny_paper_tables', a.device, dtype, a.ckpt_steps)
        print(f"eval + checkpoint ({c['ckpt_gb']:.2f} GB incl. AdamW moments): eval {c['eval_s']:.2f}s, snapshot {c['snapshot_s']:.2f}s, "
              f"cost beside {a.ckpt_steps} steps of {c['step_s']*1000:.0f} ms: {c['eval_save_overhead_s']:.2f}s "
              f"(blocking save: {c['blocking_save_s']:.2f}s); throughput with both every 250 iters: "
              f"{100*c['ratio_at_interval_250']:.1f}% of loop-only (blocking save: {100*c['ratio_at_interval_250_blocking_save']:.1f}%)", flush=True)
    res['counting'] = time_counting_sizes(a)
    save_json(a.out, res)

def time_offload(a, cuda, dtype):
    """--preset offload: host tables against device tables with the same row-wise AdamW, and the paper's dense
    default, at paper shapes on CUDA (tiny on CPU), the tables' slots times --table_scale."""
    base = PRESETS['paper' if cuda else 'tiny']
    scaled = {m: {**base[m], 'table_size': base[m]['table_size'] * a.table_scale} for m in ('hash', 'nine')}
    configs = {name: bench_config(name) for name in OFFLOAD_CONFIGS.split(',')}
    tr = time_training({**base, **scaled}, a.device, a.steps, a.rounds, cuda and not a.no_compile, dtype, configs)
    print_training(tr, configs)
    print('host / device tables step time (row-wise AdamW both): ' + ', '.join(
        f"{m} {v:.3f}" for m, v in tr['ratio_host_over_device_step_time'].items()))
    for m in ('hash_host', 'nine_host'):
        h = tr[m]['host_tables']
        print(f"{m}: {h['rows_staged_per_step']:,.0f} rows staged per step ({h['rows_shared_per_step']:,.0f} from the step "
              f"before, {h['rows_hot_per_step']:,.0f} from the resident hot tier), {h['bytes_in_per_step'] / 2**20:.1f} MiB in, {h['bytes_out_per_step'] / 2**20:.1f} MiB out, "
              f"{h['table_ms_per_step']:.1f} ms of the step in staging and the table update; hot lookups "
              f"{100 * h['hot_lookup_share']:.1f}%")
    return tr

if __name__ == '__main__':
    try:
        main()
    except DataError as e:              # a checkpoint or data dir the user named: one line, no traceback
        sys.exit(f"error: {e}")
