"""Behaviour fingerprints of every config in configs/: each trained at tiny size (the same overrides for
all), then sha256 of its metrics.jsonl and of its final weights. A refactor that must change no behaviour
runs this before and after and compares the two files (LOG.md records each such check):

  python tests/config_fingerprints.py --data data/fp --out /tmp/fp_before --json before.json
  ... change the code ...
  python tests/config_fingerprints.py --data data/fp --out /tmp/fp_after --json after.json
  python tests/config_fingerprints.py --compare before.json after.json

--data: a data dir with a hot tier of 2,000 (made when missing, from the embedded Tiny Shakespeare).
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configurator import override  # noqa: E402
TINY = ['--n_layer=8', '--n_head=4', '--n_embd=64', '--block_size=64', '--batch_size=2', '--gradient_accumulation_steps=2',
        '--max_iters=6', '--lr_decay_iters=6', '--warmup_iters=2', '--eval_interval=3', '--log_interval=1',
        '--val_windows=8', '--eval_batch_size=4', '--table_size=4096', '--hot_size=2000', '--engram_head_dim=16',
        '--embed_buckets=512', '--pkm_subkeys=16', '--ckpt_interval=0', "--device='cpu'", "--dtype='float32'",
        '--compile=False', '--wandb_log=False']
BASE = 'configs/tiny_hash.py'     # what the fine-tune configs start from (their init_from)


def configs():
    return sorted(glob.glob('configs/*.py') + glob.glob('configs/*/*.py'))


def weights_sha(path):
    import torch
    sd = torch.load(path, map_location='cpu', weights_only=False)['model']
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes() if sd[k].numel() else b'')
    return h.hexdigest()


def train(cfg, out, data, extra=()):
    args = [sys.executable, 'train.py', cfg, *TINY, override('data_dir', data), override('out_dir', out), '--overwrite=True', *extra]
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        return {'error': (p.stderr.strip().splitlines() or ['?'])[-1]}
    fp = {'metrics': hashlib.sha256(open(os.path.join(out, 'metrics.jsonl'), 'rb').read()).hexdigest()}
    if os.path.exists(os.path.join(out, 'ckpt.pt')):
        fp['weights'] = weights_sha(os.path.join(out, 'ckpt.pt'))
    return fp


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default='data/fp')
    p.add_argument('--out', default='/tmp/fp')
    p.add_argument('--json', default='fingerprints.json')
    p.add_argument('--compare', nargs=2)
    a = p.parse_args()
    if a.compare:
        x, y = (json.load(open(f)) for f in a.compare)
        same = [k for k in x if x[k] == y.get(k) and 'error' not in x[k]]
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k) or 'error' in x[k]:
                print(f"{k}: {x.get(k)} -> {y.get(k)}")
        print(f"{len(same)} of {len(set(x) | set(y))} configs identical (metrics.jsonl bytes and final weights)")
        return
    os.chdir(ROOT)
    if not os.path.exists(os.path.join(a.data, 'meta.json')):
        subprocess.run([sys.executable, 'prepare_fineweb.py', '--source', 'assets/tinyshakespeare.txt', '--tokenizer',
                        'gpt2', '--hot_sizes', '2000', '--out', a.data], check=True)
    base = os.path.join(a.out, '_base')
    result = {'_base': train(BASE, base, a.data)}
    for cfg in configs():
        finetune = "init_from" in open(cfg).read() or 'finetune' in cfg
        extra = [f"--init_from='{base}/ckpt.pt'"] if finetune else []
        result[cfg] = train(cfg, os.path.join(a.out, cfg.replace('/', '_')), a.data, extra)
        print(cfg, result[cfg], flush=True)
    with open(a.json, 'w') as f:
        json.dump(result, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
