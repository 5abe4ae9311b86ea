"""
Where does the data flip? (issue 48) The data-side tables of every corpus x tokenizer x N_hot in reach, on one CPU.

  python -m tools.datamap --corpus techdocs=techdocs.jsonl --corpus debian=debian_docs.jsonl.xz \\
      --corpus both=techdocs.jsonl,debian_docs.jsonl.xz --corpus shakespeare=assets/tinyshakespeare.txt \\
      --tokenizers gpt2,deepseek-v3,bpe16k,bpe32k --out data/map --json docs/datamap/datamap.json

Per corpus: tools/replica_corpus.py's dedup and document shuffle (the replicas' corpora), and a byte-level BPE of 16K and
32K ids trained on its train share (tools/replica_corpus.py, once per size). Per corpus x tokenizer: prepare_fineweb.py (its
normal path), then the N_hot that give the paper's hot coverages of train (43 / 53 / 59%: the 2-gram counts, ranked,
say how many 2-grams cover that share of train positions), added as hot tiers; then, per N_hot, on the val windows the
replicas score: the KN trigram's hot - cold at full count and on random shares of train documents (10 draws a share), the next-token entropy by stratum
(databaseline.data_side, as prepare-time tables are computed for the GPU replica), and the share of positions whose
next token continues a word (its text starts with a letter or digit, no space: a word piece), hot and cold.
Writes one JSON (a row per corpus x tokenizer x N_hot) and prints a Markdown table.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from tools import ROOT

COVERAGES = (0.43, 0.53, 0.59)          # the paper's train hot coverage at N_hot 20K / 50K / 100K (§4)
SHARES = (0.1, 0.3, 1.0)
BPE = {'bpe16k': 16_384, 'bpe32k': 32_768}

def corpus_sources(spec):
    name, _, paths = spec.partition('=')
    if not name or not paths:
        sys.exit(f"error: --corpus takes NAME=FILE[,FILE...], got {spec!r}")
    files = paths.split(',')
    for f in files:
        if not os.path.isfile(f):
            sys.exit(f"error: --corpus {name}: {f} is not a file")
    return name, files

def script(args):
    """A repo script as a user runs it (scripts do not import scripts); its error line is the map's."""
    args = args if args[0] == '-m' else [os.path.join(ROOT, args[0]), *args[1:]]
    if subprocess.run([sys.executable, *args], env={**os.environ, 'PYTHONPATH': ROOT}).returncode != 0:
        sys.exit(f"error: {' '.join(args[:3])} ... failed (its error is above)")

def source_dirs(name, files, out, tokenizers):
    """{tokenizer: (corpus.jsonl, tokenizer spec)}: tools/replica_corpus.py's deduplicated, shuffled corpus (the same for
    every tokenizer: its order is the seed's) and, per bpe* asked for, a BPE trained on its train share."""
    dirs = {}
    for t in [t for t in tokenizers if t in BPE] or ['corpus only']:
        d = os.path.join(out, f'{name}_src_{t}'.replace(' ', '_'))
        if not os.path.exists(os.path.join(d, 'tokenizer.json')):
            script(['-m', 'tools.replica_corpus', '--source', *files, '--out', d, '--vocab_size', str(BPE.get(t, 300))])
        dirs[t] = d
    first = next(iter(dirs.values()))
    return {t: (os.path.join(dirs.get(t, first), 'corpus.jsonl'), os.path.join(dirs[t], 'tokenizer.json') if t in BPE else t)
            for t in tokenizers}

def hot_sizes_for(data_dir, meta, coverages):
    """The smallest N whose top-N 2-grams cover each share of train positions (2-grams alone: the any-order
    coverage prepare then measures is at most a point or two above)."""
    from engramlib.data import load_counts
    counts = np.sort(load_counts(data_dir, meta, 2)[1])[::-1]
    cum = np.cumsum(counts) / meta['tokens']['n_train']
    return [int(min(np.searchsorted(cum, c) + 1, len(counts))) for c in coverages]

def word_starts(tok, vocab):
    """Per token id: whether its text starts a new word (whitespace or punctuation first, or undecodable)."""
    out = np.ones(vocab + 1, bool)
    for i in range(vocab):
        t = tok.decode_token(i)
        out[i] = not (t and t[0].isalnum())
    return out

def in_word_shares(data_dir, meta, sizes, T, windows):
    """Per N_hot: the share of hot and of cold val positions whose target continues the current word."""
    import torch
    from factory import tier_index
    from engramlib.data import TokenData
    from report.databaseline import val_triples
    from model import GPTConfig
    from engramlib.tokens import Tokenizer
    starts_word = word_starts(Tokenizer.of(meta), meta['tokens']['vocab_size'])
    out = {}
    for n in sizes:
        index, _ = tier_index(data_dir, meta, n, GPTConfig.ngram_orders)
        data = TokenData(data_dir, index.max_order - 1)
        seq, _, _, c = val_triples(data, data.val_starts(T, windows), T)
        with torch.no_grad():
            hot = index(torch.as_tensor(seq), index.max_order - 1).is_hot.numpy().ravel()
        inside = ~starts_word[c]
        out[n] = (float(inside[hot].mean()), float(inside[~hot].mean()))
    return out

def map_one(name, corpus, spec, tokenizer, out, max_tokens, T, windows):
    from engramlib.data import load_meta
    from report.databaseline import data_side
    d = os.path.join(out, f'{name}_{tokenizer}')
    base = ['prepare_fineweb.py', '--source', corpus, '--tokenizer', spec, '--num_tokens', str(max_tokens), '--out', d,
            '--num_proc', '2']
    script(base + ['--hot_sizes', '1'])
    meta = load_meta(d)
    sizes = sorted(set(hot_sizes_for(d, meta, COVERAGES)))
    script(base + ['--hot_sizes', ','.join(map(str, [1] + sizes))])
    meta = load_meta(d)
    tables = data_side(d, sizes, [(T, windows)], fracs=SHARES, fingerprints=False)
    words = in_word_shares(d, meta, sizes, T, windows)
    rows = []
    for n in sizes:
        kn, b = tables['kn_by_doc_share'][tables['keys'][str(n)]], tables['baseline'][str(n)]
        rows.append({'corpus': name, 'tokenizer': tokenizer, 'vocab_size': meta['tokens']['vocab_size'],
                     'train_tokens': meta['tokens']['n_train'], 'n_hot': n,
                     'coverage_train_any': meta['coverage']['train'][str(n)]['any'],
                     'kn_hot_cold_delta': b['kn_hot_cold_delta'], 'kn_loss_hot': b['kn_loss_hot'], 'kn_loss_cold': b['kn_loss_cold'],
                     'entropy_hot': b['entropy_hot'], 'entropy_cold': b['entropy_cold'], 'val_hot_share': b['hot_share'],
                     'in_word_hot': words[n][0], 'in_word_cold': words[n][1],
                     'kn_by_doc_share': [{k: r[k] for k in ('train_frac', 'train_tokens', 'kn_hot_cold_delta', 'kn_hot_cold_delta_std',
                                                            'kn_hot_cold_delta_min', 'kn_hot_cold_delta_max')} for r in kn]})
    return rows

def markdown(rows):
    head = ('| corpus | tokenizer | train tokens | N_hot | train hot | KN hot − cold (full) | KN at 10% / 30% of docs (mean ± std, '
            '10 draws) | entropy hot / cold | next token inside a word, hot / cold |\n|---|---|---:|---:|---:|---:|---|---|---|')
    lines = [head]
    for r in rows:
        s = {x['train_frac']: x for x in r['kn_by_doc_share']}
        share = ' / '.join(f"{s[f]['kn_hot_cold_delta']:+.3f} ± {s[f]['kn_hot_cold_delta_std']:.3f}" for f in (0.1, 0.3) if f in s)
        lines.append(f"| {r['corpus']} | {r['tokenizer']} ({r['vocab_size']:,}) | {r['train_tokens']:,} | {r['n_hot']:,} | "
                     f"{r['coverage_train_any']:.1%} | {r['kn_hot_cold_delta']:+.3f} | {share} | "
                     f"{r['entropy_hot']:.2f} / {r['entropy_cold']:.2f} | {r['in_word_hot']:.1%} / {r['in_word_cold']:.1%} |")
    return '\n'.join(lines)

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.datamap', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('--corpus', action='append', required=True, help='NAME=FILE[,FILE...] (.jsonl, .txt, .csv; either .xz)')
    p.add_argument('--tokenizers', default='gpt2,deepseek-v3,bpe16k,bpe32k', help="comma-separated: gpt2, deepseek-v3, bpe16k, bpe32k")
    p.add_argument('--out', default='data/map', help='the folder of the data dirs (reused when run again)')
    p.add_argument('--json', default='datamap.json', help='the map, a row per corpus x tokenizer x N_hot')
    p.add_argument('--max_tokens', type=int, default=100_000_000, help="each corpus's token cap (prepare's --num_tokens)")
    p.add_argument('--block_size', type=int, default=256, help='the val windows the tables score (the replica runs: 256 x 128)')
    p.add_argument('--val_windows', type=int, default=128)
    a = p.parse_args(argv)
    corpora = [corpus_sources(s) for s in a.corpus]
    tokenizers = a.tokenizers.split(',')
    bad = [t for t in tokenizers if t not in ('gpt2', 'deepseek-v3', *BPE)]
    if bad:
        sys.exit(f"error: --tokenizers {bad} unknown; choose from gpt2, deepseek-v3, {', '.join(BPE)}")
    from engramlib.data import save_json
    rows, t0 = [], time.time()
    for name, files in corpora:
        sources = source_dirs(name, files, a.out, tokenizers)
        for tok in tokenizers:
            t = time.time()
            rows += map_one(name, *sources[tok], tok, a.out, a.max_tokens, a.block_size, a.val_windows)
            print(f"map: {name} x {tok} in {time.time() - t:.0f} s", flush=True)
            save_json(a.json, {'rows': rows, 'seconds': round(time.time() - t0), 'command': ' '.join(sys.argv)})
    print(markdown(rows))
    print(f"map: {len(rows)} rows in {time.time() - t0:.0f} s; wrote {a.json}")

if __name__ == '__main__':
    main()
