"""
A local corpus made fit for the replica (configs/replica/), and a tokenizer trained on it, offline.

  python -m tools.replica_corpus --source corpus.jsonl --out data/replica_src --vocab_size 8192
  python -m tools.replica_corpus --source techdocs.jsonl debian_docs.jsonl.xz --out data/gpu_replica_src --vocab_size 16384
  python prepare_fineweb.py --source data/replica_src/corpus.jsonl --tokenizer data/replica_src/tokenizer.json ...

Writes <out>/corpus.jsonl and <out>/tokenizer.json. Why each step:
  dedup     exact duplicate documents are dropped: a val document that is also in train makes every
            val n-gram "seen" (techdocs.jsonl holds 293 duplicates of 790 documents);
  shuffle   documents in a seeded random order, so the last 5% (prepare's val split) is drawn from the
            same mixture as train, as FineWeb-Edu's shuffled stream is (a corpus sorted by source puts
            one source in val);
  tokenizer a byte-level BPE of --vocab_size ids trained on the first --train_frac of the shuffled
            documents (val plays no part in the merges): a small vocabulary lets a laptop-size hot tier
            hold the paper's N_hot / vocabulary ratio (100K hot 2-grams for 128K ids), with a cheap head.
"""
import argparse
import csv
import hashlib
import json
import lzma
import os
import random
import sys

EOT = '<|endoftext|>'

def documents(path, text_column):
    """Texts of a .jsonl (one JSON object per line), .csv (a row per document) or .txt (one document) file, any of
    them xz-compressed (.jsonl.xz, .txt.xz: Python's lzma, no extra package)."""
    opener = lzma.open if path.endswith('.xz') else open
    with opener(path, 'rt', encoding='utf-8', newline='' if '.csv' in path else None) as f:
        if path.removesuffix('.xz').endswith('.csv'):
            csv.field_size_limit(2**31 - 1)
            for row in csv.DictReader(f):
                if text_column not in row:
                    sys.exit(f"error: {path} has no column '{text_column}'; pass --text_column")
                yield row[text_column]
            return
        if not path.removesuffix('.xz').endswith('.jsonl'):
            yield f.read()
            return
        for i, line in enumerate(f):
            if line.strip():
                row = json.loads(line)
                if text_column not in row:
                    sys.exit(f"error: {path} line {i + 1} has no column '{text_column}'; pass --text_column")
                yield row[text_column]

def dedup_shuffle(texts, seed):
    seen, kept = set(), []
    for t in texts:
        h = hashlib.sha256(t.encode()).digest()
        if t.strip() and h not in seen:
            seen.add(h)
            kept.append(t)
    random.Random(seed).shuffle(kept)
    return kept

def train_bpe(texts, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)   # GPT-2's byte-level scheme
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok

def write_new(path, write):
    """Write through an exclusive temp file beside path, then rename: no half file, no followed link."""
    tmp = f'{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp'
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.replica_corpus', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('--source', required=True, nargs='+', help='.jsonl or .csv (with --text_column) or .txt files, each optionally .xz')
    p.add_argument('--text_column', default='text', help='the text field of .jsonl rows')
    p.add_argument('--out', required=True, help='the folder to write corpus.jsonl and tokenizer.json into')
    p.add_argument('--vocab_size', type=int, default=8192, help='BPE ids in all, the end-of-text token included')
    p.add_argument('--train_frac', type=float, default=0.95, help="the tokenizer reads the first this share of documents (prepare's train split)")
    p.add_argument('--seed', type=int, default=0, help='seed of the document order')
    a = p.parse_args(argv)
    for src in a.source:
        if not os.path.isfile(src):
            sys.exit(f"error: --source {src} is not a file")
    if not 256 < a.vocab_size <= 2**16 or not 0 < a.train_frac <= 1:
        sys.exit("error: --vocab_size must be in (256, 65536] and --train_frac in (0, 1]")
    raw = []
    for src in a.source:
        try:
            raw += documents(src, a.text_column)
        except (UnicodeDecodeError, json.JSONDecodeError, lzma.LZMAError, EOFError) as e:
            sys.exit(f"error: cannot read {src} as UTF-8 text or JSON lines ({type(e).__name__}: {e})")
    docs = dedup_shuffle(raw, a.seed)
    if not docs:
        sys.exit(f"error: {' '.join(a.source)} holds no non-empty document")
    os.makedirs(a.out, exist_ok=True)
    tok = train_bpe(docs[:max(1, int(len(docs) * a.train_frac))], a.vocab_size)

    def corpus(path):
        with open(path, 'x', encoding='utf-8') as f:
            for t in docs:
                f.write(json.dumps({'text': t}) + '\n')
    write_new(os.path.join(a.out, 'corpus.jsonl'), corpus)
    write_new(os.path.join(a.out, 'tokenizer.json'), lambda path: tok.save(path))
    print(f"{a.out}: {len(docs)} documents ({len(raw) - len(docs)} duplicates or empty dropped), "
          f"tokenizer of {tok.get_vocab_size()} ids")

if __name__ == '__main__':
    main()
