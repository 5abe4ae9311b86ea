"""
The n-gram counting benchmark (python bench.py --count_tokens N[,N...]): prepare_fineweb's counting engines and hot
tiers on synthetic token streams, each size and engine in its own process (its peak RSS its own); and the synthetic
streams bench.py's training timers read.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

from configurator import parse_size
from engramlib import counting
from tools import ROOT

def synth_tokens(n, vocab, seed=0):
    """Zipf-like token ids (rank ~ u^3): a few ids very frequent, a long tail, like real text."""
    u = np.random.default_rng(seed).random(n, dtype=np.float32)
    return (u * u * u * (vocab - 1)).astype(np.uint16 if vocab <= 65536 else np.uint32)

def synth_text(n, vocab, seed=0, n_phrases=1 << 21, phrase_len=8):
    """Text-like tokens: a stream of phrases (fixed random 8-token sequences of Zipf tokens, the phrase drawn
    Zipf-like from 2M), so n-grams repeat as in text instead of being nearly all distinct as i.i.d. tokens are."""
    phrases = synth_tokens(n_phrases * phrase_len, vocab, seed=12345).reshape(n_phrases, phrase_len)
    u = np.random.default_rng(seed).random(-(-n // phrase_len), dtype=np.float32)
    return phrases[(u * u * u * (n_phrases - 1)).astype(np.int64)].reshape(-1)[:n]

def write_synth_tokens(path, n, vocab, kind='iid', seed=1, chunk=1 << 26):
    """Synthetic tokens in chunks straight to a file: memory does not grow with n (1B tokens = 2 GB of uint16).
    kind: 'iid' (synth_tokens: almost every 3-gram distinct, the worst case) or 'text' (synth_text)."""
    gen = synth_tokens if kind == 'iid' else synth_text
    with open(path, 'wb') as f:
        for i, s in enumerate(range(0, n, chunk)):
            f.write(gen(min(chunk, n - s), vocab, seed=[seed, i]).tobytes())

def time_counting(n_tokens, engine, memory_limit, kind='iid', vocab=50257, hot_sizes=(20_000, 50_000, 100_000), sort_bound=True):
    """prepare_fineweb's n-gram counting (one engine) + hot tiers on synthetic tokens, in a temp dir at the repo's
    root; with the process's peak RSS (run it in a fresh process per engine: the peak only grows).
    sort_bound: also time one np.sort of the order-3 keys, the bound the numpy engine is measured against."""
    import bbhash
    import resource
    import tempfile
    canon = np.arange(vocab + 1, dtype=np.int64)
    with tempfile.TemporaryDirectory(dir=ROOT) as d:
        write_synth_tokens(os.path.join(d, 'train.bin'), n_tokens, vocab, kind)
        tokens = np.memmap(os.path.join(d, 'train.bin'), dtype=np.uint16, mode='r')
        t0 = time.perf_counter()
        if engine == 'numpy':
            for o, (k, c) in counting.count_numpy(tokens, canon, [2, 3], 3).items():
                np.save(os.path.join(d, f'ngrams_o{o}_keys.npy'), k)
                np.save(os.path.join(d, f'ngrams_o{o}_counts.npy'), c)
            del k, c
        else:
            counting.count_duckdb(tokens, canon, [2, 3], 3, d, memory_limit)
        t1 = time.perf_counter()
        distinct = {}
        for o in (2, 3):
            keys, counts = (os.path.join(d, f'ngrams_o{o}_{n}.npy') for n in ('keys', 'counts'))
            distinct[str(o)] = len(np.load(keys, mmap_mode='r'))
            ranked = counting.top_n(keys, counts, max(hot_sizes))[0]     # as prepare: one ranking (files read in chunks), nested tiers
            for n in hot_sizes:
                bbhash.PyMPHF(ranked[:n].tolist(), n, 1, 1.0)
        t2 = time.perf_counter()
        out = {'tokens': n_tokens, 'engine': engine, 'kind': kind, 'count_s': t1 - t0, 'hot_tiers_s': t2 - t1, 'total_s': t2 - t0,
               'distinct': distinct, 'peak_rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        if sort_bound:
            keys = counting.chunk_keys(tokens, canon, 0, n_tokens, 3, 3)
            t3 = time.perf_counter()
            np.sort(keys)
            out['one_np_sort_s'] = time.perf_counter() - t3
    return out

def counting_in_subprocess(n_tokens, engine, memory_limit, kind):
    """time_counting in a fresh process, so that each engine's peak RSS is its own."""
    code = (f"import json, sys; sys.path.insert(0, {ROOT!r}); from tools import bench_counting; "
            f"print('RESULT ' + json.dumps(bench_counting.time_counting({n_tokens}, {engine!r}, {memory_limit}, {kind!r}, "
            f"sort_bound={engine == 'numpy'})))")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    if p.returncode != 0:
        return {'tokens': n_tokens, 'engine': engine, 'error': p.stderr[-500:]}
    return json.loads(p.stdout.split('RESULT ', 1)[1])

def time_counting_sizes(a):
    """The counting engines on each --count_tokens size, each in its own process (its peak RSS is its own)."""
    sizes = [int(x.replace('_', '')) for x in a.count_tokens.split(',') if int(x.replace('_', ''))]
    out = []
    for n in sizes:
        for engine in a.count_engines.split(','):
            out.append(c := counting_in_subprocess(n, engine, parse_size(a.memory_limit), a.count_data))
            if 'error' in c:
                print(f"counting {n:,} tokens, {engine}: failed: {c['error']}")
                continue
            print(f"counting {n:,} {a.count_data} tokens, {engine}: {c['count_s']:.1f}s count + {c['hot_tiers_s']:.1f}s hot tiers = "
                  f"{c['total_s']:.1f}s, peak RSS {c['peak_rss_gb']:.2f} GiB; distinct 2-/3-grams {c['distinct']['2']:,} / "
                  f"{c['distinct']['3']:,}" + (f"; one np.sort of the 3-gram keys {c['one_np_sort_s']:.1f}s "
                                                f"(count / sort = {c['count_s'] / c['one_np_sort_s']:.2f})" if 'one_np_sort_s' in c else ''), flush=True)
    return out
