"""
The data directory format, written by prepare_fineweb.py and read by train.py / eval_stratified.py.

  meta.json                 everything needed to check the rest (tokenizer, sizes, dtype, checksums)
  train.bin, val.bin        token ids, raw little-endian uint16/uint32 (nanoGPT's format)
  canonical.npy             int32[vocab+1]: canonical id per token id; the last entry is the pad id
  ngrams_o{n}_{keys,counts}.npy   every distinct training n-gram (sorted keys) and its count
  hot/n{N}/o{n}.mphf        bbhash MPHF over the top-N n-grams of order n
  hot/n{N}/o{n}_keys.npy    the key stored at each MPHF slot (the membership check)
  hot/n{N}/o{n}_counts.npy  its training count

Every write is atomic (temp file in the same dir, fsync, rename): a crash leaves the old file or
the new one, never half of one. meta.json['files'] holds the sha256 of every artifact; readers verify
a file before its first use in a process (data_file) and refuse a mismatch with the command that repairs it.
"""
import hashlib
import json
import os
import sys

import numpy as np
import torch

from fsafe import DataError, atomic_write, save_json   # noqa: F401 (re-exported: the data layer's writes)

FORMAT_VERSION = 2              # 2: meta.json['files'] holds the sha256 of every artifact

def save_npy(path, arr):
    atomic_write(path, lambda f: np.save(f, arr))

def sha256_file(path, chunk=1 << 24):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()

# -----------------------------------------------------------------------------
# reading a data dir: every artifact is checked against the sha256 meta.json records for it

def load_meta(data_dir):
    path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(path):
        raise DataError(f"{data_dir} is not a prepared data dir (no meta.json). "
                        f"Build it with: python prepare_fineweb.py --out {data_dir} ...")
    try:
        with open(path) as f:
            meta = json.load(f)
        assert isinstance(meta, dict)
    except (ValueError, AssertionError, UnicodeDecodeError):
        raise DataError(f"{path} is not a valid meta.json (damaged?). Rebuild the data dir: "
                        f"python prepare_fineweb.py <its arguments> --out {data_dir} --overwrite") from None
    if meta.get('format_version') != FORMAT_VERSION:
        raise DataError(f"{path} has format_version {meta.get('format_version')}, this code reads "
                        f"{FORMAT_VERSION}. Re-run prepare_fineweb.py into a new --out.")
    for stage in ('tokens', 'canonical', 'ngrams'):
        if stage not in meta:
            raise DataError(f"{data_dir} is incomplete (stage '{stage}' never finished). "
                            f"Re-run the same prepare_fineweb.py command to finish it.")
    check_meta_against_files(data_dir, meta)
    return meta

def check_meta_against_files(data_dir, meta):
    """meta.json's sizes agree with the artifacts (a hand-edited vocabulary or token count is refused): token
    counts with the bins' sizes, the vocabulary with the canonical map's length."""
    t = meta['tokens']
    fix = f"meta.json was edited or belongs to another build; rebuild with {prepare_command(data_dir, meta)} --overwrite"
    try:
        itemsize = np.dtype(t['dtype']).itemsize
        for split in ('train', 'val'):
            path = os.path.join(data_dir, f'{split}.bin')
            if os.path.exists(path) and os.path.getsize(path) != t[f'n_{split}'] * itemsize:
                raise DataError(f"{path} holds {os.path.getsize(path) / itemsize:,.1f} tokens, meta.json says "
                                f"{t[f'n_{split}']:,}: the file was cut short or replaced after prepare. Re-run "
                                f"{prepare_command(data_dir, meta)} (it verifies every file and rebuilds what is damaged).")
        canon = os.path.join(data_dir, 'canonical.npy')
        n_canon = len(np.load(canon, mmap_mode='r')) if os.path.exists(canon) else t['vocab_size'] + 1
        if n_canon != t['vocab_size'] + 1 or meta['canonical'].get('vocab_size') != t['vocab_size']:
            raise DataError(f"{data_dir}/meta.json says the vocabulary has {t['vocab_size']:,} ids, its canonical map "
                            f"covers {n_canon - 1:,}: {fix}")
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{data_dir}/meta.json lacks or garbles {e}: {fix}") from None

def prepare_command(data_dir, meta):
    """The prepare_fineweb.py command that built (and so repairs) a data dir."""
    a = meta.get('tokens', {}).get('args', {})
    hot = ','.join(str(n) for n in meta.get('hot', {}).get('sizes', [])) or '20000,50000,100000'
    orders = ','.join(str(o) for o in meta.get('ngrams', {}).get('orders', [2, 3]))
    return (f"python prepare_fineweb.py --source '{a.get('source')}' --tokenizer {a.get('tokenizer')} "
            f"--num_tokens {a.get('num_tokens')} --val_frac {a.get('val_frac')} --orders {orders} --hot_sizes {hot} --out {data_dir}")

_verified = {}   # (real path, size, mtime) -> sha256: each file is hashed once per process

def file_sha256(path):
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]

def data_file(data_dir, meta, rel):
    """The path of artifact `rel` of a data dir, once it matches the sha256 meta.json records for it."""
    path = os.path.join(data_dir, rel)
    expected = meta.get('files', {}).get(rel)
    fix = f"Re-run {prepare_command(data_dir, meta)} (it verifies every file and rebuilds what is damaged)."
    if expected is None or not os.path.exists(path):
        raise DataError(f"{path} is missing{'' if expected else ' from meta.json'}. {fix}")
    if file_sha256(path) != expected:
        raise DataError(f"{path} does not match its checksum in meta.json: damaged, truncated or replaced "
                        f"after prepare. {fix}")
    return path

def open_tokens(data_dir, meta, split):
    """np.memmap of a verified split."""
    return np.memmap(data_file(data_dir, meta, f'{split}.bin'), dtype=np.dtype(meta['tokens']['dtype']), mode='r')

def load_canonical(data_dir, meta):
    return np.load(data_file(data_dir, meta, 'canonical.npy'))

def load_counts(data_dir, meta, order, name='ngrams'):
    """(sorted distinct training keys, counts) of one order: canonical n-grams ('ngrams'), or the data
    baseline's raw-id trigrams ('rawgrams', a later prepare stage)."""
    if name == 'rawgrams' and 'rawgrams' not in meta:
        raise DataError(f"{data_dir} has no raw-id trigram counts (the data baseline's; data dirs prepared before "
                        f"they existed). Re-run {prepare_command(data_dir, meta)}: it adds only them.")
    return tuple(np.load(data_file(data_dir, meta, f'{name}_o{order}_{col}.npy')) for col in ('keys', 'counts'))

def hot_files(n_hot, order):
    d = f'hot/n{n_hot}'
    return {'keys': f'{d}/o{order}_keys.npy', 'counts': f'{d}/o{order}_counts.npy', 'mphf': f'{d}/o{order}.mphf'}

class HotTier:
    """Top-N n-grams of one order: the MPHF, the key at each slot, its count."""

    def __init__(self, data_dir, meta, n_hot, order):
        sizes = meta.get('hot', {}).get('sizes', [])
        if n_hot not in sizes:
            raise DataError(f"{data_dir} has no hot tier with N_hot={n_hot} (it has {sizes}). "
                            f"Add it with: python prepare_fineweb.py <same args> --hot_sizes "
                            f"{','.join(str(s) for s in sorted(set(sizes) | {n_hot}))}")
        self.data_dir, self.meta, self.files = data_dir, meta, hot_files(n_hot, order)
        self.order, self.n_hot, self.sha256 = order, n_hot, meta['files'].get(self.files['keys'])
        self.slot_keys = np.load(data_file(data_dir, meta, self.files['keys']))
        self.counts = np.load(data_file(data_dir, meta, self.files['counts']))

    def mphf(self):
        import bbhash
        return bbhash.load_mphf(data_file(self.data_dir, self.meta, self.files['mphf']))

    def sorted_index(self):
        """(sorted keys, their slots) for the vectorized lookup."""
        order = np.argsort(self.slot_keys, kind='stable')
        return torch.from_numpy(self.slot_keys[order]), torch.from_numpy(order.astype(np.int64))

def tokenizer_signature(meta):
    """What a model trained on this data depends on: token ids and the canonical map."""
    t = meta['tokens']
    return {'tokenizer': t['tokenizer'], 'vocab_size': t['vocab_size'],
            'tokenizer_sha256': t['tokenizer_sha256'], 'canonical_sha256': meta['files']['canonical.npy']}

# -----------------------------------------------------------------------------
# batches: pure functions of (seed, iter, global micro-step); each window carries its n-gram context

class TokenData:
    """Train/val token streams of a data dir. Every window comes with the `n_prev` tokens before it:
    the real preceding tokens (for val position 0, the tail of train), the pad id only before the
    stream's first token. So prepare-time counts, training routes and eval labels agree exactly."""

    def __init__(self, data_dir, n_prev):
        self.dir, self.meta, self.n_prev = data_dir, load_meta(data_dir), n_prev
        self.pad = self.meta['tokens']['vocab_size']
        self.splits = {s: open_tokens(data_dir, self.meta, s) for s in ('train', 'val')}
        tail = np.asarray(self.splits['train'][len(self.splits['train']) - n_prev:], dtype=np.int64) if n_prev else np.zeros(0, np.int64)
        self.prefix = {'train': np.full(n_prev, self.pad, np.int64), 'val': tail}

    def windows(self, split, starts, T):
        """x (B,T), y (B,T), prev (B,n_prev) as int64 numpy arrays for windows starting at `starts`."""
        data, prefix, c = self.splits[split], self.prefix[split], self.n_prev
        idx = np.asarray(starts, np.int64)[:, None] + np.arange(-c, T + 1)
        tok = np.asarray(data[np.clip(idx, 0, len(data) - 1).ravel()], dtype=np.int64).reshape(idx.shape)
        if c:
            tok = np.where(idx < 0, prefix[np.clip(idx + c, 0, c - 1)], tok)
        return tuple(np.ascontiguousarray(a) for a in (tok[:, c:-1], tok[:, c + 1:], tok[:, :c]))

    def check_block_size(self, T):
        for s, d in self.splits.items():
            if len(d) < T + 1:
                raise DataError(f"block_size {T} needs at least {T + 1} tokens but the {s} split of "
                                f"{self.dir} has {len(d)}. Lower --block_size or prepare more data.")

    def train_starts(self, seed, it, samples, T):
        """Window starts of the given global sample indices of iteration `it`: each a pure function of
        (seed, it, sample index), so any micro-batch size, accumulation and process count that make the
        same global batch draw the same windows."""
        return np.array([np.random.default_rng([seed, it, i]).integers(0, len(self.splits['train']) - T)
                         for i in samples], dtype=np.int64)

    def val_starts(self, T, n):
        """The fixed validation set: the first n non-overlapping windows of val (fewer if val is short).
        It depends on nothing but T and n (`val_windows`), so every config, seed, micro-batch size and
        process count is scored on the same positions."""
        return np.arange(min(n, (len(self.splits['val']) - 1) // T)) * T

def read_metrics(path):
    """The rows of a run's metrics.jsonl. A crash can cut its last line short: that line is dropped with a
    warning (a resume redoes it); a bad line anywhere else is a DataError naming the file and line."""
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')
    last = max((i for i, l in enumerate(lines) if l.strip()), default=-1)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i != last:
                raise DataError(f"{path} line {i + 1} is not a JSON row (damaged, or written by something else).") from None
            print(f"warning: {path}: dropped its last line, cut short by a crash: {line[:60]!r}", file=sys.stderr)
    return rows

def to_device(arrays, device):
    """numpy -> torch, through pinned memory and a non-blocking copy on CUDA."""
    out = []
    for a in arrays:
        t = torch.from_numpy(a)
        if device.startswith('cuda'):
            out.append(t.pin_memory().to(device, non_blocking=True))
        else:
            out.append(t.to(device))
    return out
