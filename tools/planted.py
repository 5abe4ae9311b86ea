"""
A corpus with a known hot/cold structure: the positive control (and its negative) of the flip study (issue 47).

  python -m tools.planted --preset flip --out data/control_flip     # corpus -> prepare_fineweb.py -> data-side tables
  python -m tools.planted --preset none --out data/control_none     # the same, the rare continuations left uncertain

Does the instrument (counting, the hot tier, Nine's routing, the is_hot labels, the stratified losses, Table 4's
flip detector, the report's verdicts) see a flip that is known to be there? The corpus is made so that it must:

  frequent runs  `run_len` words drawn uniformly from `n_frequent` words. Their 2-grams are the most frequent of the
                 corpus, so they fill the hot tier at N_hot = n_frequent^2: hot positions, and a high-entropy
                 next word (log n_frequent nats) that no amount of training lowers;
  rare phrases   `n_phrases` fixed phrases of `phrase_len` words from `n_rare` words, each occurring `repeats`
                 times, scattered at random: rare-but-seen contexts, cold. preset 'flip': each phrase is the same
                 words every time, so after its first two words the next is certain once learned; preset 'none':
                 a phrase keeps its first two words (the rare context), the rest are drawn afresh from its own pool
                 of n_frequent words at every occurrence, as uncertain as a frequent run.

Early in training the hot runs are learned (their contexts are everywhere) and the phrases are not: hot - cold < 0.
Under 'flip', once the phrases are learned their positions cost ~0 and hot - cold > 0: the flip. How early is set by
`repeats` (each phrase's exposures per epoch). Under 'none' the cold stratum is never easier than the hot one.
The tokens per preset and the shares are the replica's regime at tiny shapes (configs/control/): 0.86 epochs of
configs/control/base.py, 58% of train hot at the largest N_hot, hot tier 20% of the tables, iso-parameter.

The text is words separated by spaces with a word-level tokenizer.json (one id per word), and it goes through
prepare_fineweb.py as any corpus does. Then the data's own prediction, before any training (databaseline.data_side,
as tools/gpu_study.py --prepare computes it for the GPU replica): the KN trigram on random shares of train documents
(10 draws a share) and the next-token entropy, per N_hot, in <out>/data_side.json; <out>/planted.json holds the
knobs, the ground truth (which share of hot and cold positions are frequent runs and phrases) and the crossing.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

from tools import ROOT

EOT = '<|endoftext|>'
PRESETS = {'flip': True, 'none': False}     # do a phrase's words after its first two repeat?
KNOBS = dict(tokens=140_000, hot_share=0.6, n_frequent=8, run_len=16, n_rare=2_000, phrase_len=8, repeats=80,
             doc_len=512, seed=0)
SHARES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)   # of train documents, for the KN crossing

def word(i):
    """A pronounceable word of its own for every id (two or more consonant-vowel syllables)."""
    syl = [c + v for c in 'bdfgklmnprstvz' for v in 'aeiou']
    out = ''
    while True:
        out += syl[i % len(syl)]
        i //= len(syl)
        if i == 0 and len(out) >= 4:
            return out

def n_phrases(k):
    return max(1, round((1 - k['hot_share']) * k['tokens'] / (k['phrase_len'] * k['repeats'])))

def segments(preset, k):
    """The corpus as a shuffled list of (word ids, is a phrase) segments: frequent ids 0..n_frequent-1, rare ids after."""
    rng = np.random.default_rng(k['seed'])
    fresh = np.random.default_rng([k['seed'], 1])     # 'none' only: its draws leave everything else as 'flip' has it
    F, L, M = k['n_frequent'], k['phrase_len'], n_phrases(k)
    phrases = F + rng.integers(0, k['n_rare'], size=(M, L))
    pools = F + rng.integers(0, k['n_rare'], size=(M, F))                 # 'none': each phrase's continuation words
    segs = [('phrase', m) for m in range(M) for _ in range(k['repeats'])]
    segs += [('run', None)] * round(k['hot_share'] * k['tokens'] / k['run_len'])
    out = []
    for i in rng.permutation(len(segs)):
        kind, m = segs[i]
        if kind == 'run':
            out.append((rng.integers(0, F, k['run_len']), False))
        elif PRESETS[preset]:
            out.append((phrases[m], True))
        else:
            out.append((np.concatenate([phrases[m, :2], fresh.choice(pools[m], L - 2)]), True))
    return out

def documents(preset, k):
    """Texts of about doc_len words (the segments in order, cut at segment ends)."""
    words = [word(i) for i in range(k['n_frequent'] + k['n_rare'])]
    docs, cur = [], []
    for ids, _ in segments(preset, k):
        cur += [words[i] for i in ids]
        if len(cur) >= k['doc_len']:
            docs.append(' '.join(cur))
            cur = []
    return docs + ([' '.join(cur)] if cur else [])

def tokenizer_json(k):
    """A word-level tokenizer (tokenizers' JSON format): one id per word, end-of-text last."""
    vocab = {word(i): i for i in range(k['n_frequent'] + k['n_rare'])}
    vocab[EOT] = len(vocab)
    return {'version': '1.0', 'truncation': None, 'padding': None,
            'added_tokens': [{'id': vocab[EOT], 'content': EOT, 'single_word': False, 'lstrip': False, 'rstrip': False,
                              'normalized': False, 'special': True}],
            'normalizer': None, 'pre_tokenizer': {'type': 'WhitespaceSplit'}, 'post_processor': None,
            'decoder': {'type': 'WordPiece', 'prefix': '##', 'cleanup': False},
            'model': {'type': 'WordLevel', 'vocab': vocab, 'unk_token': EOT}}

def hot_sizes(k):
    """N_hot = n_frequent^2 (every frequent 2-gram, no phrase's) and the replica's ablation ratios 0.2 and 0.5."""
    full = k['n_frequent'] ** 2
    return [round(full * r) for r in (0.2, 0.5)] + [full]

def crossing(rows):
    """The share of train documents at which the KN trigram's mean hot - cold first reaches 0 (linear between the
    counted shares); None if it never does; 0 if it is >= 0 from the first share."""
    prev = None
    for r in rows:
        d = r['kn_hot_cold_delta']
        if d >= 0:
            if prev is None:
                return 0.0
            return prev['train_frac'] + (r['train_frac'] - prev['train_frac']) * -prev['kn_hot_cold_delta'] / (d - prev['kn_hot_cold_delta'])
        prev = r
    return None

def write_source(preset, k, src):
    from engramlib.fsafe import atomic_write
    os.makedirs(src, exist_ok=True)
    docs = documents(preset, k)
    atomic_write(os.path.join(src, 'corpus.jsonl'), lambda f: f.write(''.join(json.dumps({'text': t}) + '\n' for t in docs).encode()))
    atomic_write(os.path.join(src, 'tokenizer.json'), lambda f: f.write(json.dumps(tokenizer_json(k)).encode()))

def figure(run_dirs, out):
    """Hot - cold of every config (mean over its seeds; planted flip: solid, or dotted at fewer tokens per iter; none:
    dashed) against the train tokens it has seen, beside the KN trigram's on random document shares of the same corpus
    (black): counting's crossing and the model's on one axis."""
    from report.figures import pyplot, save_fig
    from report.runs import load_run
    plt = pyplot()
    groups = {}
    for d in run_dirs:
        r = load_run(d)
        with open(os.path.join(d, 'config.json')) as f:
            c = json.load(f)
        tpi = c['batch_size'] * c['gradient_accumulation_steps'] * c['block_size']
        groups.setdefault((r['data_dir'], r['config'], tpi), []).append((r, tpi))
    planted = {}
    for data_dir in {k[0] for k in groups}:
        with open(os.path.join(data_dir, 'planted.json')) as f:
            planted[data_dir] = json.load(f)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = sorted({n for _, n, _ in groups})
    styles = {t: st for t, st in zip(sorted({t for *_, t in groups}, reverse=True), ('-', ':', '-.'))}
    for (data_dir, name, tpi), rs in sorted(groups.items()):
        preset = planted[data_dir]['preset']
        its = sorted(set.intersection(*({e['iter'] for e in r['evolution'] if e['iter'] > 0} for r, _ in rs)))
        d = np.array([[{e['iter']: e['hot_cold_delta'] for e in r['evolution']}[i] for i in its] for r, _ in rs])
        ax.plot(np.array(its) * tpi, d.mean(0), color=plt.cm.tab10(names.index(name) % 10), lw=1.5,
                ls=styles[tpi] if preset == 'flip' else '--', label=f"{name} ({preset}, {tpi} tokens/iter, {len(rs)} seeds)")
    for data_dir, s in sorted(planted.items()):
        rows = s['kn_by_doc_share'][str(max(s['hot_sizes']))]
        x = [r['train_tokens'] for r in rows]
        ax.errorbar(x, [r['kn_hot_cold_delta'] for r in rows], yerr=[r['kn_hot_cold_delta_std'] or 0 for r in rows], color='k',
                    ls='-' if s['preset'] == 'flip' else '--', marker='o', ms=3, capsize=2, label=f"KN trigram on a share of train ({s['preset']})")
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xscale('log')
    ax.set(xlabel='train tokens seen (a model: iter x tokens per iter; KN: tokens counted)', ylabel='loss hot − loss cold (nats)',
           title='The planted flip: counting crosses after ~2 sightings of a phrase, the models much later')
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    return save_fig(fig, os.path.dirname(out) or '.', os.path.basename(out))

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.planted', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('--preset', choices=sorted(PRESETS), help="'flip': the planted flip; 'none': the control without one")
    p.add_argument('--out', help='the data dir to write (its source text goes to <out>_src)')
    for name, v in KNOBS.items():
        p.add_argument(f'--{name}', type=type(v), default=v)
    p.add_argument('--block_size', type=int, default=64, help="the runs' block size (the val windows the KN tables score)")
    p.add_argument('--val_windows', type=int, default=64, help="the runs' val_windows")
    p.add_argument('--figure', metavar='PNG', help="instead: draw the runs' hot - cold beside the KN curve of their data (--runs)")
    p.add_argument('--runs', nargs='+', default=[], help='with --figure: run dirs (out_dirs) trained on planted data')
    a = p.parse_args(argv)
    if a.figure:
        from engramlib.data import DataError
        try:
            return print(f"wrote {figure(a.runs, a.figure)}")
        except (DataError, OSError, KeyError, ValueError) as e:
            sys.exit(f"error: --figure: {e} (--runs takes the out_dirs of runs trained on tools/planted.py's data)")
    k = {n: getattr(a, n) for n in KNOBS}
    if not (a.preset and a.out):
        sys.exit("error: --preset and --out are required (or --figure PNG --runs DIR...)")
    if not (0 < k['hot_share'] < 1 and k['n_frequent'] >= 2 and k['phrase_len'] >= 3 and min(k['repeats'], k['run_len'], k['n_rare'], k['tokens']) > 0):
        sys.exit("error: --hot_share must be in (0, 1), --n_frequent >= 2, --phrase_len >= 3 and the counts positive")
    src = f'{a.out}_src'
    write_source(a.preset, k, src)
    sizes = hot_sizes(k)
    cmd = [sys.executable, os.path.join(ROOT, 'prepare_fineweb.py'),
           '--source', os.path.join(src, 'corpus.jsonl'), '--tokenizer', os.path.join(src, 'tokenizer.json'),
           '--num_tokens', str(2 * k['tokens']), '--hot_sizes', ','.join(map(str, sizes)), '--out', a.out, '--num_proc', '1']
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"error: prepare_fineweb.py failed on {src}/corpus.jsonl (its error is above)")
    from report.databaseline import data_side
    tables = data_side(a.out, sizes, [(a.block_size, a.val_windows)], fracs=SHARES)
    from engramlib.data import load_meta, save_json
    meta = load_meta(a.out)
    rows = {n: tables['kn_by_doc_share'][key] for n, key in tables['keys'].items()}
    summary = {'preset': a.preset, 'knobs': k, 'n_phrases': n_phrases(k), 'hot_sizes': sizes,
               'train_tokens': meta['tokens']['n_train'], 'coverage_train': meta['coverage']['train'],
               'baseline': tables['baseline'],
               'kn_crossing_share': {str(n): crossing(r) for n, r in rows.items()},
               'kn_by_doc_share': {str(n): r for n, r in rows.items()}}
    save_json(os.path.join(a.out, 'planted.json'), summary)
    for n in sizes:
        b, c = tables['baseline'][str(n)], summary['kn_crossing_share'][str(n)]
        print(f"N_hot {n:>5}: hot share {b['hot_share']:.1%}, KN hot - cold at full count {b['kn_hot_cold_delta']:+.3f}, "
              f"entropy hot {b['entropy_hot']:.2f} / cold {b['entropy_cold']:.2f}; KN crosses 0 at "
              + (f"{c:.1%} of train" if c is not None else "no share (no flip in the data)"))

if __name__ == '__main__':
    main()
