"""
Sample text from a checkpoint (nanoGPT's sample.py, with the Engram n-gram context carried across steps).

  python sample.py --ckpt out/quickstart/tiny_nine_s0/ckpt.pt --start "ROMEO:" --num_samples 3
  python sample.py --ckpt out/x/ckpt.pt --start FILE:prompt.txt --temperature 0.8 --top_k 200 --top_p 0.95

The checkpoint is loaded safely (weights_only, checksum) with its data dir (tokenizer, hot tier), each
prompt begins like a document in training (end-of-text first), and a KV cache makes each new token one
position of compute (--no_cache for the plain sliding window: the same logits, tested).
"""
import argparse
import math
import os
import sys
import time

from configurator import HelpFormatter

MAX_SAMPLES, MAX_NEW_TOKENS = 10_000, 100_000   # bounds on what one command generates
SAMPLE_BATCH = 32      # samples generated together
STREAM_STEP = 64       # tokens between two prints of a sample that streams

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    p.add_argument('--ckpt', required=True, help="a run's ckpt.pt or best.pt")
    p.add_argument('--start', default='\n', help='the prompt, or FILE:path to read it from a file')
    p.add_argument('--num_samples', type=int, default=3, help='samples to draw (generated SAMPLE_BATCH at a time: memory stays bounded)')
    p.add_argument('--max_new_tokens', type=int, default=200, help='tokens per sample')
    p.add_argument('--temperature', type=float, default=0.8, help='0 = greedy')
    p.add_argument('--top_k', type=int, default=200, help='sample among the k most likely tokens (0 = all)')
    p.add_argument('--top_p', type=float, default=1.0, help='nucleus: the smallest set of tokens with this much probability')
    p.add_argument('--seed', type=int, default=1337)
    p.add_argument('--no_cache', action='store_true', help='recompute the whole window every step')
    p.add_argument('--data_dir', help="override the checkpoint's data dir")
    p.add_argument('--device', default='auto', help="'auto' (cuda if available) | cpu | cuda")
    a = p.parse_args(argv)
    if not (1 <= a.num_samples <= MAX_SAMPLES and 1 <= a.max_new_tokens <= MAX_NEW_TOKENS and 0 <= a.temperature < math.inf
            and 0 < a.top_p <= 1 and a.top_k >= 0 and 0 <= a.seed < 2**63):
        p.error(f'--num_samples must be in 1..{MAX_SAMPLES:,}, --max_new_tokens in 1..{MAX_NEW_TOKENS:,}, --temperature a finite '
                f'number >= 0, --top_k >= 0, 0 < --top_p <= 1, --seed in 0..2**63-1')
    if a.device.startswith('cuda'):
        from engramlib.system import device_problem
        if device_problem(a.device):
            p.error(device_problem(a.device))
    return a

if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):   # before the heavy imports: help in a blink
    parse_args()

from engramlib import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import torch

from factory import load_model
from engramlib.data import DataError, regular_file
from engramlib.system import autocast_context, resolve_device
from engramlib.tokens import Tokenizer

def prompt_ids(tok, start):
    text = start
    if start.startswith('FILE:'):
        try:
            regular_file(start[5:], 'the prompt file')
            with open(start[5:], encoding='utf-8') as f:
                text = f.read()
        except (OSError, UnicodeDecodeError, DataError) as e:
            raise DataError(f"cannot read the prompt file {start[5:]}: {e}") from None
    return [tok.eot] + tok.encode_batch([text])[0]

def generate(model, x, a, gen, tok, autocast):
    """The batch's continuations, STREAM_STEP tokens per call (each call re-reads the window: the same logits as one
    long call); a single sample's text is printed as it grows, a batch shows a progress bar instead."""
    from tqdm import tqdm
    stream, shown, left = x.size(0) == 1, '', a.max_new_tokens
    with tqdm(total=left, unit='tok', disable=stream, file=sys.stderr, leave=False) as bar:
        while left:
            n = min(STREAM_STEP, left)
            with autocast:
                x = model.generate(x, n, a.temperature, a.top_k or None, a.top_p, use_cache=not a.no_cache, generator=gen)
            left -= n
            bar.update(n)
            if stream:
                text = tok.decode(x[0, 1:].tolist()).rstrip('\ufffd')   # a character cut between two steps waits
                print(text[len(shown):], end='', flush=True)
                shown = text
    return x, shown

def main(argv=None):
    a = parse_args(argv)
    device = resolve_device(a.device)
    try:
        model, ckpt, data_dir, meta = load_model(a.ckpt, a.data_dir)
        tok = Tokenizer.of(meta)
        ids = prompt_ids(tok, a.start)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    model.to(device)
    gen = torch.Generator(device=device).manual_seed(a.seed)
    t0 = time.time()
    for first in range(0, a.num_samples, SAMPLE_BATCH):
        x = torch.tensor([ids] * min(SAMPLE_BATCH, a.num_samples - first), dtype=torch.long, device=device)
        y, shown = generate(model, x, a, gen, tok, autocast_context(device.split(':')[0], ckpt['config']['dtype']))
        for row in y.tolist():
            print(tok.decode(row[1:])[len(shown):])       # a streamed sample: only what is not printed yet
            print('---------------', flush=True)
    dt = time.time() - t0
    print(f"{a.num_samples} x {a.max_new_tokens} tokens in {dt:.2f} s ({a.num_samples * a.max_new_tokens / dt:,.0f} tok/s, "
          f"{'no cache' if a.no_cache else 'KV cache'}, {device}); checkpoint {a.ckpt} at iter {ckpt['iter_num']}", file=sys.stderr)

if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(128 + 2)
    except BrokenPipeError:         # `sample.py ... | head`: the reader has what it wanted; no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
