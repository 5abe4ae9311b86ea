"""
Exact n-gram counts over the train split (prepare_fineweb.py's counting stage; bench.py times it). Two engines
with byte-identical output files:
  numpy   every key of an order in RAM, one in-place sort per order (the orders in parallel); about
          BYTES_PER_TOKEN bytes per train token at the peak. The default where that fits --memory_limit.
  duckdb  per chunk of tokens, its distinct keys and counts to a parquet file (kept, so a rerun after a
          kill resumes there); DuckDB's GROUP BY + ORDER BY under --memory_limit spills to disk; the
          sorted result streams into the .npy files. For corpora far beyond RAM (1B-10B tokens).
"""
import glob
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from engramlib.data import atomic_write, file_sha256
from engram import ngram_keys

CHUNK = 1 << 23
BYTES_PER_TOKEN = 64            # numpy engine: 2 orders x (keys 8 + flags 1 + starts/counts/distinct keys 3 x 8) + headroom

def chunk_keys(tokens, canon, start, stop, order, max_order, prefix=None):
    """Keys of the `order`-grams ending at positions [start, stop) of `tokens`, with the real
    preceding tokens as context (from `prefix`, the previous split's tail, before position 0;
    the pad id before the stream's first token)."""
    ctx = max_order - 1
    lo = max(start - ctx, 0)
    ids = tokens[lo:stop].astype(np.int64)
    if start - ctx < 0:
        head = prefix[len(prefix) - (ctx - start):] if prefix is not None else []
        pad = np.full(ctx - start - len(head), len(canon) - 1, np.int64)   # pad token = vocab_size
        ids = np.concatenate([pad, np.asarray(head, np.int64), ids])
    cids = torch.from_numpy(canon[ids])
    return ngram_keys(cids, order, ctx).numpy()

def count_numpy(tokens, canon, orders, max_order, progress=True, chunk=CHUNK):
    """{order: (sorted distinct keys, counts)}, all in RAM: per order every key, one in-place sort,
    run-length counts; the orders in parallel threads (numpy's sort releases the GIL: one core each)."""
    n = len(tokens)
    def count(o):
        keys = np.empty(n, np.int64)
        for start in range(0, n, chunk):
            keys[start:start + chunk] = chunk_keys(tokens, canon, start, min(start + chunk, n), o, max_order)
        keys.sort()
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        return keys[starts], np.diff(starts, append=n)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                    # the key computation: one core per order
    try:
        with ThreadPoolExecutor(len(orders)) as ex:
            counted = list(tqdm(ex.map(count, orders), total=len(orders), desc='count n-grams', disable=not progress))
    finally:
        torch.set_num_threads(threads)
    return dict(zip(orders, counted))

def count_duckdb(tokens, canon, orders, max_order, out, memory_limit, progress=True, chunk=CHUNK, name='ngrams'):
    """Exact counts under a memory budget, written as out/{name}_o{o}_{keys,counts}.npy; returns
    {order: distinct}. The per-chunk parts live in a work dir named by train.bin's checksum."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    n = len(tokens)
    work = os.path.join(out, f'.count_parts_{name}_{file_sha256(os.path.join(out, "train.bin"))[:16]}_{chunk}')
    for old in glob.glob(os.path.join(out, f'.count_parts_{name}_*')):
        if os.path.islink(old) or not os.path.isdir(old):
            os.remove(old)                           # never ours: nothing is written through it
        elif old != work:
            shutil.rmtree(old)                       # parts of other tokens or chunking: never mixed in
    os.makedirs(work, exist_ok=True)
    for ci, start in enumerate(tqdm(range(0, n, chunk), desc='count n-grams (parts)', disable=not progress)):
        for o in orders:
            path = os.path.join(work, f'o{o}_{ci:06d}.parquet')
            if not os.path.exists(path):             # written before a kill: resume after it
                keys = torch.from_numpy(chunk_keys(tokens, canon, start, min(start + chunk, n), o, max_order))
                u, c = torch.unique(keys, return_counts=True)
                table = pa.table({'key': u.numpy(), 'count': c.numpy()})
                atomic_write(path, lambda f: pq.write_table(table, f))
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{int(memory_limit * 0.25) // 2**20}MB'")   # DuckDB's buffers (it overshoots them ~1.5x in ORDER BY); the rest: this process
    con.execute(f"SET temp_directory = '{os.path.join(work, 'spill')}'")
    con.execute("SET threads = 2")
    merged = {o: os.path.join(work, f'o{o}_merged.parquet') for o in orders}
    for o in orders:
        if not os.path.exists(merged[o]):
            con.execute(f"COPY (SELECT key, SUM(count)::BIGINT AS count FROM read_parquet('{work}/o{o}_0*.parquet') "
                        f"GROUP BY key ORDER BY key) TO '{merged[o]}.tmp' (FORMAT parquet)")
            os.replace(merged[o] + '.tmp', merged[o])
    con.close()                                      # DuckDB's buffers go before the result is streamed out
    distinct = {o: stream_to_npy(pq.ParquetFile(merged[o], pre_buffer=False), out, o, name) for o in orders}
    shutil.rmtree(work)
    return distinct

def stream_to_npy(parquet, out, order, name='ngrams'):
    """The merged (key, count) parquet into the two .npy files, batch by batch (as np.save would write
    them: same header, same bytes), checking the keys are strictly increasing."""
    n = parquet.metadata.num_rows
    header = {'descr': '<i8', 'fortran_order': False, 'shape': (n,)}
    files = {col: os.path.join(out, f'{name}_o{order}_{col}.npy') for col in ('keys', 'counts')}
    def write(name):
        def fn(f):
            np.lib.format.write_array_header_1_0(f, header)
            last = None
            for batch in parquet.iter_batches(batch_size=1 << 22, columns=['key' if name == 'keys' else 'count']):
                a = batch.column(0).to_numpy().astype('<i8', copy=False)
                if name == 'keys':
                    assert (last is None or a[0] > last) and (np.diff(a) > 0).all(), "DuckDB result not sorted by key"
                    last = a[-1]
                f.write(a.tobytes())
        atomic_write(files[name], fn)
    write('keys'), write('counts')
    return n

def top_n(keys, counts, n, chunk=1 << 24):
    """The n most frequent keys, ties broken by key (ascending), as (keys, counts) in rank order.
    An exact selection over (keys, counts) chunk by chunk, keeping only the candidates that can still
    make the cut; no full sort of all distinct n-grams. keys/counts: arrays, or .npy paths read in chunks
    (not memory-mapped: the pages would stay in this process's memory)."""
    return top_n_chunks(zip(npy_chunks(keys, chunk), npy_chunks(counts, chunk)), n)

def npy_chunks(a, chunk):
    """Consecutive pieces of an array, or of a 1-D .npy file read piece by piece."""
    if not isinstance(a, str):
        yield from (a[s:s + chunk] for s in range(0, len(a), chunk))
        return
    with open(a, 'rb') as f:
        np.lib.format.read_magic(f)
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        for s in range(0, shape[0], chunk):
            yield np.fromfile(f, dtype=dtype, count=min(chunk, shape[0] - s))

def top_n_chunks(chunks, n):
    best_k = best_c = None
    for k, c in chunks:
        if best_k is None:
            best_k, best_c = k[:0].copy(), c[:0].copy()
        k, c = np.asarray(k), np.asarray(c)
        if len(best_c) == n and n:
            keep = c >= best_c[-1]                   # below the current n-th count: never in the final top n
            k, c = k[keep], c[keep]
        best_k, best_c = top_n_in_memory(np.concatenate([best_k, k]), np.concatenate([best_c, c]), n)
    return best_k, best_c

def top_n_in_memory(keys, counts, n):
    if n == 0 or len(keys) == 0:
        return keys[:0], counts[:0]
    n = min(n, len(keys))
    # most distinct n-grams are singletons: select the threshold among the repeated ones when enough exist
    rep = counts[counts > 1]
    pool = rep if len(rep) >= n else counts
    thr = np.partition(pool, len(pool) - n)[len(pool) - n]              # n-th largest count
    above = np.flatnonzero(counts > thr)
    ties = np.flatnonzero(counts == thr)
    need = n - len(above)
    if need < len(ties):                                                # the smallest keys among the ties
        ties = ties[np.argpartition(keys[ties], need - 1)[:need]] if need else ties[:0]
    sel = np.concatenate([above, ties])
    o = np.lexsort((keys[sel], -counts[sel]))
    return keys[sel][o], counts[sel][o]
