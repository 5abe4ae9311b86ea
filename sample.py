"""
Sample text from a checkpoint (nanoGPT's sample.py, with the Engram n-gram context carried across steps).

  python sample.py --ckpt out/quickstart/tiny_nine_s0/ckpt.pt --start "ROMEO:" --num_samples 3
  python sample.py --ckpt out/x/ckpt.pt --start FILE:prompt.txt --temperature 0.8 --top_k 200 --top_p 0.95

The checkpoint is loaded safely (weights_only, checksum) with its data dir (tokenizer, hot tier), each
prompt begins like a document in training (end-of-text first), and a KV cache makes each new token one
position of compute (--no_cache for the plain sliding window: the same logits, tested).
"""
import argparse
import sys
import time

from configurator import HelpFormatter

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
    if a.num_samples < 1 or a.max_new_tokens < 1 or a.temperature < 0 or not 0 < a.top_p <= 1 or a.top_k < 0:
        p.error('--num_samples and --max_new_tokens must be >= 1, --temperature >= 0, --top_k >= 0, 0 < --top_p <= 1')
    if a.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            p.error(f"--device {a.device}: this machine has no CUDA device; use --device cpu (or auto)")
    return a

if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):   # before the heavy imports: help in a blink
    parse_args()

import envcheck  # noqa: F401  (first: without the venv, one line saying `source setup.sh`)
import torch

from checkpoint import load_model
from data import DataError
from system import autocast_context, resolve_device
from tokens import Tokenizer

def prompt_ids(tok, start):
    text = start
    if start.startswith('FILE:'):
        try:
            with open(start[5:], encoding='utf-8') as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read the prompt file {start[5:]}: {e}") from None
    return [tok.eot] + tok.encode_batch([text])[0]

SAMPLE_BATCH = 32      # samples generated together

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
        with autocast_context(device.split(':')[0], ckpt['config']['dtype']):
            y = model.generate(x, a.max_new_tokens, a.temperature, a.top_k or None, a.top_p, use_cache=not a.no_cache, generator=gen)
        for row in y.tolist():
            print(tok.decode(row[1:]))
            print('---------------', flush=True)
    dt = time.time() - t0
    print(f"{a.num_samples} x {a.max_new_tokens} tokens in {dt:.2f} s ({a.num_samples * a.max_new_tokens / dt:,.0f} tok/s, "
          f"{'no cache' if a.no_cache else 'KV cache'}, {device}); checkpoint {a.ckpt} at iter {ckpt['iter_num']}", file=sys.stderr)

if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(128 + 2)
