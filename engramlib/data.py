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

from engramlib.fsafe import DataError, atomic_write, regular_file, save_json   # noqa: F401 (re-exported: the data layer's writes)

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

def _int(v):
    return type(v) is int and v >= 0

# The fields readers use, each with its test: a hand-edited or foreign meta.json is refused here, once, by name.
META_SCHEMA = {
    ('tokens', 'dtype'): (lambda v: v in ('uint16', 'uint32'), "'uint16' or 'uint32'"),
    ('tokens', 'vocab_size'): (lambda v: _int(v) and v > 0, 'a positive integer'),
    ('tokens', 'eot'): (_int, 'a token id'),
    ('tokens', 'n_train'): (_int, 'an integer >= 0'),
    ('tokens', 'n_val'): (_int, 'an integer >= 0'),
    ('tokens', 'tokenizer'): (lambda v: isinstance(v, str), 'a string'),
    ('tokens', 'tokenizer_sha256'): (lambda v: isinstance(v, str), 'a string'),
    ('tokens', 'args'): (lambda v: isinstance(v, dict), 'an object'),
    ('canonical', 'vocab_size'): (_int, 'an integer'),
    ('canonical', 'pad_id'): (_int, 'an integer'),
    ('ngrams', 'orders'): (lambda v: isinstance(v, list) and v and all(type(o) is int and o >= 2 for o in v), 'a list of orders >= 2'),
    ('ngrams', 'max_order'): (lambda v: type(v) is int and v >= 2, 'an integer >= 2'),
    ('hot', 'sizes'): (lambda v: isinstance(v, list) and all(_int(n) and n > 0 for n in v) and len(set(v)) == len(v),
                       'a list of distinct positive integers'),
    ('files',): (lambda v: isinstance(v, dict) and all(isinstance(h, (str, type(None))) for h in v.values()),
                 'an object of file -> sha256'),
}

def check_meta_schema(path, meta):
    for keys, (ok, want) in META_SCHEMA.items():
        v, where = meta, []
        for k in keys:
            if not isinstance(v, dict):
                break
            where.append(k)
            v = v.get(k, ...)
        if v is ... and keys[0] == 'hot':
            continue                                  # the hot stage comes last; a data dir may not have it yet
        if v is ... or not ok(v):
            got = 'missing' if v is ... else f'{v!r}'[:80]
            raise DataError(f"{path}: {'.'.join(where)} must be {want}, got {got}. meta.json was edited or written by "
                            f"something else; rebuild the data dir with prepare_fineweb.py (same arguments) --overwrite.")

def load_meta(data_dir):
    path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(path):
        raise DataError(f"{data_dir} is not a prepared data dir (no meta.json). "
                        f"Build it with: python prepare_fineweb.py --out {data_dir} ...")
    regular_file(path, 'the data dir\'s meta.json')
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
    check_meta_schema(path, meta)
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
    def field(stage, key, default):          # an edited meta.json must not break the message that reports it
        v = meta.get(stage) if isinstance(meta, dict) else None
        v = v.get(key) if isinstance(v, dict) else None
        return v if isinstance(v, type(default)) else default
    a = field('tokens', 'args', {})
    hot = ','.join(str(n) for n in field('hot', 'sizes', [])) or '20000,50000,100000'
    orders = ','.join(str(o) for o in field('ngrams', 'orders', [2, 3]))
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
    regular_file(path, 'data file')
    if file_sha256(path) != expected:
        raise DataError(f"{path} does not match its checksum in meta.json: damaged, truncated or replaced "
                        f"after prepare. {fix}")
    return path

_in_range = set()   # sha256 of the token files whose ids were checked against the vocabulary in this process

def open_tokens(data_dir, meta, split):
    """np.memmap of a verified split whose ids all lie in the vocabulary (a checksum proves the file is the one
    prepare wrote, not that meta.json's vocabulary is its own: an id >= vocab would index past every embedding)."""
    path = data_file(data_dir, meta, f'{split}.bin')
    tokens = np.memmap(path, dtype=np.dtype(meta['tokens']['dtype']), mode='r')
    sha = meta['files'][f'{split}.bin']
    if sha not in _in_range:
        top = max((int(tokens[i:i + (1 << 26)].max()) for i in range(0, len(tokens), 1 << 26)), default=-1)
        if top >= meta['tokens']['vocab_size']:
            raise DataError(f"{path} holds token id {top}, outside the vocabulary of {meta['tokens']['vocab_size']:,} "
                            f"that meta.json declares: the data dir mixes two builds. Rebuild it with "
                            f"{prepare_command(data_dir, meta)} --overwrite.")
        _in_range.add(sha)
    return tokens

def load_npy(data_dir, meta, rel):
    """A verified .npy artifact; never unpickled (an object array is refused as not this repo's)."""
    path = data_file(data_dir, meta, rel)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path} is not a plain numeric array ({str(e).splitlines()[0][:100]}). Rebuild the data dir "
                        f"with {prepare_command(data_dir, meta)} --overwrite.") from None

def load_canonical(data_dir, meta):
    return load_npy(data_dir, meta, 'canonical.npy')

def load_counts(data_dir, meta, order, name='ngrams'):
    """(sorted distinct training keys, counts) of one order: canonical n-grams ('ngrams'), or the data
    baseline's raw-id trigrams ('rawgrams', a later prepare stage)."""
    if name == 'rawgrams' and 'rawgrams' not in meta:
        raise DataError(f"{data_dir} has no raw-id trigram counts (the data baseline's; data dirs prepared before "
                        f"they existed). Re-run {prepare_command(data_dir, meta)}: it adds only them.")
    return tuple(load_npy(data_dir, meta, f'{name}_o{order}_{col}.npy') for col in ('keys', 'counts'))

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
        self.slot_keys = load_npy(data_dir, meta, self.files['keys'])
        self.counts = load_npy(data_dir, meta, self.files['counts'])
        recorded = meta.get('hot', {}).get('tiers', {}).get(str(n_hot), {}).get(str(order), {}).get('n_keys')
        if len(self.slot_keys) > n_hot or len(self.counts) != len(self.slot_keys) or recorded not in (None, len(self.slot_keys)):
            raise DataError(f"{data_dir}/{self.files['keys']} holds {len(self.slot_keys):,} keys, not the top {n_hot:,} "
                            f"n-grams meta.json records ({recorded}): hot tiers of two sizes were swapped or edited. "
                            f"Rebuild with {prepare_command(data_dir, meta)} --overwrite.")

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

def file_stamp(path):
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns

class TokenData:
    """Train/val token streams of a data dir. Every window comes with the `n_prev` tokens before it:
    the real preceding tokens (for val position 0, the tail of train), the pad id only before the
    stream's first token. So prepare-time counts, training routes and eval labels agree exactly."""

    def __init__(self, data_dir, n_prev):
        self.dir, self.meta, self.n_prev = data_dir, load_meta(data_dir), n_prev
        self.pad = self.meta['tokens']['vocab_size']
        self.splits = {s: open_tokens(data_dir, self.meta, s) for s in ('train', 'val')}
        self.fds = {s: os.open(d.filename, os.O_RDONLY) for s, d in self.splits.items()}    # windows are read from these
        self.stamps = {s: (d.filename, file_stamp(d.filename), self.sampled_pages(s)) for s, d in self.splits.items()}
        tail = np.asarray(self.splits['train'][len(self.splits['train']) - n_prev:], dtype=np.int64) if n_prev else np.zeros(0, np.int64)
        self.prefix = {'train': np.full(n_prev, self.pad, np.int64), 'val': tail}

    def __del__(self):
        for fd in getattr(self, 'fds', {}).values():
            os.close(fd)

    def read(self, split, lo, hi):
        """Tokens [lo, hi) of a split, from its file."""
        dtype = self.splits[split].dtype
        want = (hi - lo) * dtype.itemsize
        buf = os.pread(self.fds[split], want, lo * dtype.itemsize)
        if len(buf) != want:
            raise DataError(f"{self.splits[split].filename} is shorter than when this run opened it (cut short or being "
                            f"rewritten); the run stops here, its last checkpoint kept. Restore the data dir and resume.")
        return np.frombuffer(buf, dtype=dtype)

    def files_sha256(self):
        """The token files' checksums: what the run trains and is evaluated on."""
        return {f'{s}.bin': self.meta['files'][f'{s}.bin'] for s in self.splits}

    def sampled_pages(self, split, pages=64, page=4096):
        """sha256 of `pages` pages spread evenly over a split's file: a file rewritten in place (its size and mtime
        put back) is caught where it changed one of them; 256 KiB read per check, about a millisecond. A full hash
        would read the whole file at every check (10 GB at the paper's scale); this is the cheap middle."""
        fd, size = self.fds[split], os.fstat(self.fds[split]).st_size
        h = hashlib.sha256()
        for i in range(pages):
            h.update(os.pread(fd, page, (size - page) * i // max(1, pages - 1) if size > page else 0))
        return h.hexdigest()

    def check_unchanged(self):
        """The token files are the ones opened and hold what they held (a rebuild or an edit under a running run would
        go unnoticed until the next resume): the same inode, size and mtime, and the same sampled pages. Called before
        each checkpoint and each eval row is written, so neither comes from changed data."""
        for s, (path, stamp, pages) in self.stamps.items():
            if file_stamp(path) != stamp or self.sampled_pages(s) != pages:
                raise DataError(f"{path} changed while this run read it (rebuilt or replaced); the run stops here, its last "
                                f"checkpoint kept. Resume on the data it started with, or start a new run.")

    def windows(self, split, starts, T):
        """x (B,T), y (B,T), prev (B,n_prev) as int64 numpy arrays for windows starting at `starts`. Read with pread,
        not through the memory map: a file cut short under the run is an error line, where the map would kill the
        process (SIGBUS)."""
        data, prefix, c = self.splits[split], self.prefix[split], self.n_prev
        idx = np.asarray(starts, np.int64)[:, None] + np.arange(-c, T + 1)
        clipped = np.clip(idx, 0, len(data) - 1)
        tok = np.stack([self.read(split, row[0], row[-1] + 1)[row - row[0]] for row in clipped]).astype(np.int64)
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

    def val_starts(self, T, n, note=False):
        """The fixed validation set: the first n non-overlapping windows of val (fewer if val is short; with note,
        said). It depends on nothing but T and n (`val_windows`), so every config, seed, micro-batch size and
        process count is scored on the same positions."""
        held = (len(self.splits['val']) - 1) // T
        if note and held < n:
            print(f"note: val holds {held} windows of {T} tokens, fewer than --val_windows {n}: evaluating on {held}")
        return np.arange(min(n, held)) * T

def read_metrics(path):
    """The rows of a run's metrics.jsonl. A crash can cut its last line short: that line is dropped with a
    warning (a resume redoes it); a bad line anywhere else (not JSON, or not a row: an object with a 'kind' and an
    integer 'iter') is a DataError naming the file and line."""
    regular_file(path, 'metrics file')
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')
    last = max((i for i, l in enumerate(lines) if l.strip()), default=-1)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if i != last:
                raise DataError(f"{path} line {i + 1} is not a JSON row (damaged, or written by something else).") from None
            print(f"warning: {path}: dropped its last line, cut short by a crash: {line[:60]!r}", file=sys.stderr)
            continue
        if not (isinstance(row, dict) and isinstance(row.get('kind'), str) and type(row.get('iter')) is int):
            raise DataError(f"{path} line {i + 1} is not a metrics row (an object with 'kind' and an integer 'iter'); "
                            f"the file was edited or written by something else.")
        rows.append(row)
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
