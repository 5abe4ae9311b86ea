"""Prepare at 1B-10B tokens: the duckdb counting engine (bounded memory, spills to disk) gives byte-identical
artifacts to the in-RAM numpy engine, and a prepare killed while counting resumes to the same bytes."""
import glob
import json
import os
import random
import sys
from types import SimpleNamespace


import prepare_fineweb as pf
from conftest import FINEWEB_CSV, SHAKESPEARE, need_shared, prepare, run_killing

ARTIFACTS = ['ngrams_o2_keys.npy', 'ngrams_o2_counts.npy', 'ngrams_o3_keys.npy', 'ngrams_o3_counts.npy',
             'hot/n50/o2_keys.npy', 'hot/n50/o3_counts.npy', 'hot/n200/o3_keys.npy', 'hot/n200/o2.mphf',
             'rawgrams_o3_keys.npy', 'rawgrams_o3_counts.npy']

def build_both(tmp_path, source, tokenizer, *extra):
    outs = {}
    for engine in ('numpy', 'duckdb'):
        outs[engine] = prepare(tmp_path / engine, source, tokenizer, '--hot_sizes', '50,200', '--count_engine', engine,
                               '--chunk_tokens', '5000', *extra)
    return outs

def assert_identical(outs):
    metas = {e: json.load(open(os.path.join(d, 'meta.json'))) for e, d in outs.items()}
    assert metas['numpy']['ngrams']['engine'] == 'numpy' and metas['duckdb']['ngrams']['engine'] == 'duckdb'
    for rel in ARTIFACTS:
        a, b = (open(os.path.join(d, rel), 'rb').read() for d in outs.values())
        assert a == b, rel
    assert metas['numpy']['coverage'] == metas['duckdb']['coverage']
    assert metas['numpy']['ngrams']['distinct'] == metas['duckdb']['ngrams']['distinct']
    assert not glob.glob(os.path.join(outs['duckdb'], '.count_parts_*'))       # the work dir is cleaned up

def test_engines_agree_on_generated_data_with_many_ties(tmp_path, corpus):
    assert_identical(build_both(tmp_path, corpus['txt'], corpus['tokenizer']))

def test_engines_agree_on_tiny_shakespeare(tmp_path):
    assert_identical(build_both(tmp_path, SHAKESPEARE, 'gpt2', '--chunk_tokens', '40000'))

def test_engines_agree_on_the_fineweb_sample(tmp_path):
    assert_identical(build_both(tmp_path, need_shared(FINEWEB_CSV), 'gpt2'))

def test_auto_picks_the_engine_that_fits_the_budget():
    args = SimpleNamespace(count_engine='auto', memory_limit=4 * 2**30)
    assert pf.count_engine(args, 50_000_000) == 'numpy'
    assert pf.count_engine(args, 1_000_000_000) == 'duckdb'
    assert pf.count_engine(SimpleNamespace(count_engine='duckdb', memory_limit=2**40), 10) == 'duckdb'
    assert pf.parse_size('4GB') == 4 * 2**30 and pf.parse_size('500MB') == 500 * 2**20 and pf.parse_size('12.5G') == int(12.5 * 2**30)


def test_prepare_killed_while_counting_resumes_to_the_same_bytes(tmp_path, corpus):
    """kill -9 at random moments of the duckdb counting stage (parts written, DuckDB merging, .npy
    streaming), rerun each time; the result equals an uninterrupted run byte for byte."""
    args = ['--source', SHAKESPEARE, '--tokenizer', 'gpt2', '--hot_sizes', '50,200', '--count_engine', 'duckdb',
            '--chunk_tokens', '1000', '--num_proc', '1']
    ref = prepare(tmp_path / 'ref', SHAKESPEARE, 'gpt2', *args[4:-2])
    out = str(tmp_path / 'killed')
    kills = run_killing(lambda: [sys.executable, 'prepare_fineweb.py', *args, '--out', out],
                        lambda: lambda: bool(glob.glob(os.path.join(out, '.count_parts_*', '*.parquet'))),
                        random.Random(1), 3, lambda r: r.uniform(0.1, 1.5), 300)
    assert kills >= 2
    for rel in ARTIFACTS + ['train.bin', 'val.bin', 'canonical.npy']:
        assert open(os.path.join(ref, rel), 'rb').read() == open(os.path.join(out, rel), 'rb').read(), rel
