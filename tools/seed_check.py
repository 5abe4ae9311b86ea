"""
python -m tools.seed_check --ckpt <run>/ckpt.pt: the seed choices of a learned-seeds run (embedding='mihe' with
embed_seed_choices > 1, extensions/mdx/embeddings.py) and the straight-through estimate checked against the real change.
"""
import argparse

import numpy as np
import torch

from factory import load_model
from engramlib.data import TokenData
from extensions.mdx.embeddings import seed_gradient_check


def main(argv=None):
    """python -m tools.seed_check --ckpt <run>/ckpt.pt: a learned-seeds run's seed choices and the
    straight-through check on its first validation windows."""
    p = argparse.ArgumentParser(prog='python -m tools.seed_check', description=main.__doc__, allow_abbrev=False)
    p.add_argument('--ckpt', required=True)
    p.add_argument('--windows', type=int, default=64)
    p.add_argument('--batch', type=int, default=16)
    a = p.parse_args(argv)
    model, _, data_dir, _ = load_model(a.ckpt)
    emb = model.transformer.wte
    if getattr(emb, 'seed_logits', None) is None:
        raise SystemExit(f"{a.ckpt} has no learned seeds (embedding='mihe' with embed_seed_choices > 1)")
    data = TokenData(data_dir, model.index.max_order - 1)
    T = model.config.block_size
    rows = []
    for s in range(0, a.windows, a.batch):
        x, y, prev = (torch.from_numpy(t) for t in data.windows('val', np.arange(s, min(s + a.batch, a.windows)) * T, T))
        rows += seed_gradient_check(model, x, y, prev)[0]
    agree = sum((r['estimate'] > 0) == (r['change'] > 0) for r in rows) / len(rows)
    print('seed logits per table:', [[round(v, 3) for v in l] for l in emb.seed_logits.view(emb.T, emb.S).tolist()])
    print(f"chosen seeds: {emb.seed_weights().argmax(-1).tolist()}; pairs (batch, table, other seed): {len(rows)}; "
          f"loss change when switching: min {min(r['change'] for r in rows):+.4f}, max {max(r['change'] for r in rows):+.4f}; "
          f"sign agreement of the straight-through estimate: {agree:.1%}")


if __name__ == '__main__':
    main()
