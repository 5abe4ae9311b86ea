"""bench.py's operator timers in tools/: the MD-mix inference ideas on a trained checkpoint (tools/bench_mdx.py) and
the n-gram counting benchmark (tools/bench_counting.py), run as a user types them."""
import json

import numpy as np

from conftest import run
from test_train import micro_config


def test_bench_mdx_times_every_idea_on_a_trained_checkpoint_with_exact_answers_where_the_idea_is_exact(tmp_path, gen_data):
    """--preset mdx on a micro run: each idea is measured beside the standard way; KV reuse reproduces the full
    prefill's logits, the bucket bound holds, and both adapter kinds build from the checkpoint's own settings at
    equal trainable parameters."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2)
    run(['train.py', cfg_path])
    out = tmp_path / 'mdx.json'
    run(['bench.py', '--preset', 'mdx', '--ckpt', f"{cfg['out_dir']}/ckpt.pt", '--device', 'cpu', '--out', str(out)])
    r = json.loads(out.read_text())['mdx']
    assert r['vocab'] == 448 and r['positions'] > 0
    assert r['kv_reuse_tiny']['max_abs_logit_diff'] < 1e-4 and r['kv_reuse_tiny']['reused_share'] > 0
    assert all(b['bound_holds'] for b in r['bucket_bounded'])
    assert r['cslora_params'] == r['lora_params'] > 0 and min(r['cslora_step_ms'], r['lora_step_ms']) > 0   # equal budgets


def test_bench_counting_counts_the_distinct_ngrams_of_its_synthetic_stream(tmp_path):
    """--count_tokens N: both engines report the distinct 2- and 3-grams of the stream they count, the numbers
    numpy's np.unique gives on the same stream (tools.bench_counting.write_synth_tokens, written again here)."""
    from tools.bench_counting import write_synth_tokens
    n, out = 30_000, tmp_path / 'count.json'
    run(['bench.py', '--rounds', '0', '--ckpt_steps', '0', '--head_rounds', '0', '--count_tokens', str(n),
         '--count_engines', 'numpy,duckdb', '--out', str(out)])
    write_synth_tokens(tmp_path / 'tokens.bin', n, 50257)
    t = np.fromfile(tmp_path / 'tokens.bin', dtype=np.uint16).astype(np.int64)
    padded = {o: np.concatenate([np.full(o - 1, 50257), t]) for o in (2, 3)}     # the stream's start, as prepare pads it
    want = {str(o): len(np.unique(np.stack([w[i:len(w) - o + 1 + i] for i in range(o)], 1), axis=0)) for o, w in padded.items()}
    got = json.loads(out.read_text())['counting']
    assert [c['engine'] for c in got] == ['numpy', 'duckdb'] and all(c['distinct'] == want for c in got), (got, want)
