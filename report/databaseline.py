"""
How much of the hot/cold gap is the data? (issue 20, item 2)

The paper's flip (hot positions ending up with higher loss than cold ones) is read as a property of the
memory. Part of it may be the data: frequent contexts can be intrinsically harder to continue. This file
scores the model's validation positions with a model that has no memory and no training dynamics at all,
an interpolated Kneser-Ney trigram LM counted on the train split (raw token ids: context x[t-1], x[t],
target x[t+1]; discount 0.75 at every order; the unigram level interpolated with uniform), and measures the
empirical entropy of the next token in each context. Both are split by the model's own is_hot labels, so
their hot - cold difference sits beside the model's hot_cold_delta. The trigram counts come from prepare
(rawgrams_o3_*.npy, counted by the same engines as the n-grams, so under --memory_limit); here, memory grows
with the number of distinct trigrams, not tokens (a few int64 arrays of that length).
"""
import sys

if __name__ == '__main__':
    sys.exit("report/databaseline.py is a library (the data-side baselines: the KN trigram, the data's own flip on random document "
             "shares, fingerprint false positives), not a script. Its tables appear in the study report: "
             "python eval_stratified.py --runs 'out/<study>/*'")

import json
import os

import numpy as np
import torch

from engramlib.data import load_counts, save_json
from engram import ID_BITS

D = 0.75

def pack(*cols):
    """Exact int64 keys of raw-id tuples (21 bits each, oldest highest)."""
    key = np.zeros(len(cols[0]), np.int64)
    for c in cols:
        key = (key << ID_BITS) | c.astype(np.int64)
    return key

def lookup(table_keys, table_vals, keys):
    """table_vals at each key, 0 where the key is absent."""
    if len(table_keys) == 0:
        return np.zeros(len(keys), table_vals.dtype)
    pos = np.clip(np.searchsorted(table_keys, keys), 0, len(table_keys) - 1)
    return np.where(table_keys[pos] == keys, table_vals[pos], 0)

def group_sum(keys, vals):
    """Sum of vals per distinct key (keys sorted): (distinct keys, sums)."""
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[starts], np.add.reduceat(vals, starts)


class KneserNey:
    """Interpolated Kneser-Ney trigram LM from trigram counts (sorted distinct packed keys, counts)."""

    def __init__(self, k3, c3, vocab):
        self.V = vocab
        self.k3, self.c3 = np.asarray(k3, np.int64), np.asarray(c3, np.int64)   # trigram types, counts
        ab, bc = self.k3 >> ID_BITS, self.k3 & ((1 << 2 * ID_BITS) - 1)
        order = np.argsort(ab, kind='stable')
        self.k_ab, self.c_ab = group_sum(ab[order], self.c3[order])        # c(ab.)
        self.k_ab_n, self.n_ab = group_sum(ab[order], np.ones(len(ab), np.int64))   # N1+(ab.)
        order = np.argsort(bc, kind='stable')
        self.k_bc, self.n_bc = group_sum(bc[order], np.ones(len(bc), np.int64))     # N1+(.bc): continuation count
        b_of = self.k_bc >> ID_BITS
        self.k_b, self.n_b_dot = group_sum(b_of, self.n_bc)               # N1+(.b.) = sum_c N1+(.bc)
        self.k_b_types, self.n_b_types = group_sum(b_of, np.ones(len(b_of), np.int64))  # N1+(b.) over bc types
        c_of = np.sort(self.k_bc & ((1 << ID_BITS) - 1))
        self.k_c, self.n_c = group_sum(c_of, np.ones(len(c_of), np.int64))   # N1+(.c)
        self.total_bigram_types = len(self.k_bc)

    def prob(self, a, b, c):
        """P_KN(c | a b) for arrays of raw ids."""
        a, b, c = (np.asarray(x, np.int64) for x in (a, b, c))
        p1 = (np.maximum(lookup(self.k_c, self.n_c, c) - D, 0) + D * len(self.k_c) / self.V) / self.total_bigram_types
        nb = lookup(self.k_b, self.n_b_dot, b)
        p2_known = (np.maximum(lookup(self.k_bc, self.n_bc, pack(b, c)) - D, 0)
                    + D * lookup(self.k_b_types, self.n_b_types, b) * p1) / np.maximum(nb, 1)
        p2 = np.where(nb > 0, p2_known, p1)
        cab = lookup(self.k_ab, self.c_ab, pack(a, b))
        p3_known = (np.maximum(lookup(self.k3, self.c3, pack(a, b, c)) - D, 0)
                    + D * lookup(self.k_ab_n, self.n_ab, pack(a, b)) * p2) / np.maximum(cab, 1)
        return np.where(cab > 0, p3_known, p2)

    def next_token_entropy(self, a, b):
        """Plug-in entropy (nats) of the next token after each context (a, b) from the train counts, and
        how many times the context was seen (0: unseen, entropy nan). Biased low for rare contexts."""
        ab = pack(np.asarray(a, np.int64), np.asarray(b, np.int64))
        ctx = self.k3 >> ID_BITS                                           # sorted with k3
        lo, hi = np.searchsorted(ctx, ab, 'left'), np.searchsorted(ctx, ab, 'right')
        tot = lookup(self.k_ab, self.c_ab, ctx)
        p = self.c3 / np.maximum(tot, 1)
        p_log_p = -p * np.log(p)
        cum = np.concatenate([[0.0], np.cumsum(p_log_p)])
        ent = cum[hi] - cum[lo]
        seen = lookup(self.k_ab, self.c_ab, ab)
        return np.where(seen > 0, ent, np.nan), seen


def val_triples(data, starts, T):
    """The val windows `starts` with the tokens before them, seq (B, n_prev + T), and each position's
    trigram as flat arrays: context a = x[t-1], b = x[t], target c = x[t+1]."""
    x, y, prev = data.windows('val', starts, T)
    seq = np.concatenate([prev, x], 1)
    return seq, seq[:, -T - 1:-1].ravel(), x.ravel(), y.ravel()

def route(index, seq):
    """The index's route of the windows `seq` (numpy, on the host) on whatever device the index lives on."""
    return index(torch.as_tensor(seq, device=index.canonical.device), index.max_order - 1)

def hot_labels(index, seq):
    """Each position's is_hot label (flattened), on the host."""
    return route(index, seq).is_hot.cpu().numpy().ravel()

@torch.no_grad()
def data_baseline(data, index, starts, T, vocab):
    """KN loss and next-token entropy on the validation windows `starts`, overall and split by is_hot
    (the index's route labels, as the model's metrics)."""
    kn = KneserNey(*load_counts(data.dir, data.meta, 3, 'rawgrams'), vocab)
    seq, a, b, c = val_triples(data, starts, T)
    loss = -np.log(kn.prob(a, b, c))
    ent, seen = kn.next_token_entropy(a, b)
    hot = hot_labels(index, seq)
    out = {'kn_loss': float(loss.mean()), 'kn_loss_hot': float(loss[hot].mean()), 'kn_loss_cold': float(loss[~hot].mean()),
           'entropy_hot': float(np.nanmean(ent[hot])), 'entropy_cold': float(np.nanmean(ent[~hot])),
           'context_seen_share_hot': float((seen[hot] > 0).mean()), 'context_seen_share_cold': float((seen[~hot] > 0).mean()),
           'trigram_types': int(len(kn.k3)), 'positions': int(len(loss)), 'hot_share': float(hot.mean())}
    out['kn_hot_cold_delta'] = out['kn_loss_hot'] - out['kn_loss_cold']
    out['entropy_hot_cold_delta'] = out['entropy_hot'] - out['entropy_cold']
    return out


# -----------------------------------------------------------------------------
# which cold positions? (issue 25, item 5): unseen vs seen-rarely contexts, and copyable targets

COUNT_BUCKETS = (('unseen', 0, 0), ('seen 1', 1, 1), ('seen 2-4', 2, 4), ('seen 5-19', 5, 19), ('seen >= 20', 20, np.inf))

def position_groups(data, index, starts, T):
    """Per val position of the windows `starts` (flattened B*T): is_hot, the train count of its 2-gram
    (canonical ids, the memory's key) and whether its target is copyable from the window (the bigram
    (x_t, y_t) already occurred earlier in the same window: an induction head can predict it)."""
    seq, _, b, c = val_triples(data, starts, T)
    r = route(index, seq)
    keys, counts = load_counts(data.dir, data.meta, 2)
    count2 = lookup(keys, counts, r.keys[2].cpu().numpy().ravel())
    pair = pack(b, c).reshape(len(seq), T)                                  # (B, T): (x_t, y_t)
    copyable = np.zeros(pair.shape, bool)
    for w in range(len(pair)):
        _, first = np.unique(pair[w], return_index=True)
        copyable[w] = True
        copyable[w, first] = False
    return r.is_hot.cpu().numpy().ravel(), count2, copyable.ravel()

def group_rows(is_hot, count2, copyable, losses):
    """Mean loss of each named per-position loss array per group: hot, then each cold count bucket,
    each split into copyable / not; with the group's share of the positions."""
    groups = [('hot', is_hot)] + [(f'cold, {name}', ~is_hot & (count2 >= lo) & (count2 <= hi)) for name, lo, hi in COUNT_BUCKETS]
    rows = []
    for name, m in groups:
        for sub, mm in (('all', m), ('copyable', m & copyable), ('not copyable', m & ~copyable)):
            rows.append({'group': name, 'targets': sub, 'share': float(mm.mean()), 'positions': int(mm.sum()),
                         **{k: float(v[mm].mean()) if mm.any() else None for k, v in losses.items()}})
    return rows

def kn_losses(data, starts, T, vocab):
    """The KN trigram's per-position loss on the windows `starts` (flattened), as data_baseline scores it."""
    kn = KneserNey(*load_counts(data.dir, data.meta, 3, 'rawgrams'), vocab)
    return -np.log(kn.prob(*val_triples(data, starts, T)[1:]))

def trigram_counts(tokens, pad):
    """(sorted distinct packed raw-id trigrams, counts) of a token stream, counted as prepare counts its
    rawgrams: one trigram ending at every position, the pad id before the stream's first token."""
    t = np.concatenate([[pad, pad], np.asarray(tokens, np.int64)])
    return np.unique(pack(t[:-2], t[1:-1], t[2:]), return_counts=True)

MIN_PIECES = 100

def document_bounds(train, eot):
    """Start of every document of a train stream (prepare puts eot before each), and its end. A stream of fewer
    than MIN_PIECES documents (one .txt file is one document: Tiny Shakespeare) is cut into MIN_PIECES equal
    pieces instead, so a random share is still a random share, not all or nothing."""
    starts = np.flatnonzero(np.asarray(train) == eot)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    if len(starts) < MIN_PIECES:
        starts = np.unique(np.linspace(0, len(train), MIN_PIECES, endpoint=False).astype(np.int64))
    return np.append(starts, len(train))

SHARES = (0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)    # of train documents

def kn_by_doc_share(data, sets, vocab, fracs=SHARES, draws=10, seed=0):
    """The KN trigram's hot - cold delta on fixed val positions when it counts only a random share of the train
    split's *documents* (`draws` seeded draws per share): how the data's own hot/cold gap moves with the amount of
    data seen. Random documents, not the first share of the stream: a prefix measures where the counted text sits
    as much as how much of it there is. `sets` = {key: (val window starts, T, is_hot labels)}: one count per draw
    serves them all. Returns {key: rows}, a row per share: KN loss and hot - cold as mean, std, min, max of the draws."""
    train = np.asarray(data.splits['train'])
    bounds = document_bounds(train, data.meta['tokens']['eot'])
    n_docs, rng = len(bounds) - 1, np.random.default_rng(seed)
    triples = {k: (val_triples(data, starts, T)[1:], hot) for k, (starts, T, hot) in sets.items()}
    rows = {k: [] for k in sets}
    for f in fracs:
        deltas, losses, tokens = {k: [] for k in sets}, {k: [] for k in sets}, []
        for _ in range(1 if f >= 1 else draws):
            pick = np.sort(rng.choice(n_docs, max(1, round(n_docs * f)), replace=False))
            toks = train if f >= 1 else np.concatenate([train[bounds[i]:bounds[i + 1]] for i in pick])
            kn = KneserNey(*trigram_counts(toks, pad=vocab), vocab)
            tokens.append(len(toks))
            for k, (abc, hot) in triples.items():
                loss = -np.log(kn.prob(*abc))
                losses[k].append(float(loss.mean()))
                deltas[k].append(float(loss[hot].mean() - loss[~hot].mean()))
        for k, d in deltas.items():
            rows[k].append({'train_frac': f, 'draws': len(d), 'train_tokens': int(np.mean(tokens)), 'kn_loss': float(np.mean(losses[k])),
                            'kn_hot_cold_delta': float(np.mean(d)), 'kn_hot_cold_delta_std': float(np.std(d, ddof=1)) if len(d) > 1 else None,
                            'kn_hot_cold_delta_min': min(d), 'kn_hot_cold_delta_max': max(d)})
    return rows

@torch.no_grad()
def fingerprint_analysis(data_dir, meta, hot_size, bits=(8, 16), chunk=1 << 22):
    """Algorithm 1 as written (variants.FingerprintIndex) against the exact check, over every train and val
    position: the share of non-member queries that pass the b-bit fingerprint (expected 2^-b) per order,
    and the any-order hot coverage with and without those false positives."""
    from factory import tier_index           # here, not at the top: the model's stack is only for this table
    from engramlib.data import TokenData
    from engram import NgramIndex
    from model import GPTConfig
    from extensions.variants import FingerprintIndex
    rows = []
    data = None
    for b in bits:
        index, _ = tier_index(data_dir, meta, hot_size, GPTConfig.ngram_orders,
                              kind=lambda *a, **k: FingerprintIndex(*a, bits=b, **k))
        data = data or TokenData(data_dir, index.max_order - 1)
        for split in ('train', 'val'):
            stream = np.concatenate([data.prefix[split], np.asarray(data.splits[split], np.int64)])
            n_prev, sums = index.max_order - 1, {}
            for s in range(0, len(stream) - n_prev, chunk):
                toks = torch.from_numpy(stream[s:s + chunk + n_prev])[None]
                keys = index(toks, n_prev, hot=False).keys
                hot_exact = hot_fp = None
                for o in index.orders:
                    exact, fp = NgramIndex.hot_slots(index, keys[o], o) >= 0, index.hot_slots(keys[o], o) >= 0
                    sums[o] = sums.get(o, 0) + np.array([int((~exact).sum()), int((fp & ~exact).sum())])
                    hot_exact = exact if hot_exact is None else hot_exact | exact
                    hot_fp = fp if hot_fp is None else hot_fp | fp
                sums['any'] = sums.get('any', 0) + np.array([hot_exact.numel(), int(hot_exact.sum()), int(hot_fp.sum())])
            rows.append({'bits': b, 'split': split, 'expected_fp_rate': 2.0 ** -b,
                         **{f'fp_rate_o{o}': sums[o][1] / max(1, sums[o][0]) for o in index.orders},
                         'hot_coverage_exact': sums['any'][1] / sums['any'][0], 'hot_coverage_fp': sums['any'][2] / sums['any'][0]})
    return rows

DATA_SIDE_FILE = 'data_side.json'   # beside meta.json: the report's data-only tables, computed once on a CPU (tools/gpu_study.py --prepare)

def cached(data_dir, meta, section, key, compute):
    """A data-only table of the report: read from the data dir's DATA_SIDE_FILE when it holds it for this train
    split, else compute()."""
    path = os.path.join(data_dir, DATA_SIDE_FILE)
    try:
        with open(path) as f:
            cache = json.load(f) if os.path.isfile(path) else {}        # never block on a FIFO planted at the name
    except (OSError, ValueError):
        cache = {}                                                       # absent or damaged: computed here
    if isinstance(cache, dict) and cache.get('train_sha256') == meta['files']['train.bin'] and key in cache.get(section, {}):
        return cache[section][key]
    return compute()

def write_data_side(data_dir, meta, sections):
    """Keep {section: {key: table}} in the data dir for the report (json round trip: what the report reads back)."""
    save_json(os.path.join(data_dir, DATA_SIDE_FILE), {'train_sha256': meta['files']['train.bin'], **sections})

def kn_share_key(hot_size, T, n_windows):
    return f'n_hot {hot_size}, block {T}, windows {n_windows}'

def kn_share_rows(data, index, hot_size, starts, T):
    """kn_by_doc_share's rows for one N_hot and val windows (cached)."""
    key = kn_share_key(hot_size, T, len(starts))
    def compute():
        sets = {key: (starts, T, hot_labels(index, val_triples(data, starts, T)[0]))}
        return kn_by_doc_share(data, sets, data.meta['tokens']['vocab_size'])[key]
    return cached(data.dir, data.meta, 'kn_by_doc_share', key, compute)

def data_side(data_dir, hot_sizes, shapes, fracs=SHARES, fingerprints=True):
    """The report's data-only tables that cost minutes on 20M tokens, computed once beside the data (tools/gpu_study.py
    --prepare, tools/planted.py), not where the runs are: the KN trigram on random shares of train documents (10 draws a
    share) for every N_hot and (block_size, val_windows) the report will ask for, and Algorithm 1's fingerprint false
    positives per N_hot. Returns the shares' tables, the key of each N_hot's first shape, and the KN trigram and
    next-token entropy by stratum at full count on that shape (data_baseline) per N_hot: the data's prediction."""
    import time
    from factory import tier_index
    from engramlib.data import TokenData, load_meta
    from model import GPTConfig
    meta = load_meta(data_dir)
    sets, keys, baseline, t = {}, {}, {}, time.time()
    for h in hot_sizes:
        index, _ = tier_index(data_dir, meta, h, GPTConfig.ngram_orders)
        data = TokenData(data_dir, index.max_order - 1)
        for T, w in shapes:
            starts = data.val_starts(T, w)
            key = kn_share_key(h, T, len(starts))
            keys.setdefault(str(h), key)
            baseline.setdefault(str(h), data_baseline(data, index, starts, T, meta['tokens']['vocab_size']))
            sets[key] = (starts, T, hot_labels(index, val_triples(data, starts, T)[0]))
    sections = {'kn_by_doc_share': kn_by_doc_share(data, sets, meta['tokens']['vocab_size'], fracs=fracs)}
    if fingerprints:
        sections['fingerprints'] = {str(h): fingerprint_analysis(data_dir, meta, h) for h in hot_sizes}
    write_data_side(data_dir, meta, sections)
    print(f"data-side tables (KN on random shares of train documents for {len(sets)} labellings) in {time.time() - t:.0f} s")
    return {**sections, 'keys': keys, 'baseline': baseline}
