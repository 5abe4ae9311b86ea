"""
The model factory and checkpoints: what ties a model to a data dir (the format version, the data
signature: tokenizer, canonical map, hot tier checksums), building the model with its data-derived
parts, and loading with messages that say what differs. Shared by train.py, eval_stratified.py and bench.py.
"""
import os
import threading

import numpy as np
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

import variants
from configurator import ConfigError
from data import DataError, HotTier, load_canonical, save_torch, tokenizer_signature
from engram import NgramIndex
from model import GPT

CKPT_VERSION = 1

def load_index(data_dir, meta, mcfg):
    """The n-gram index of a data dir for a model config: canonical map, the hot tier of hot_size
    (Nine's routes, every model's is_hot labels), and the training counts of every distinct n-gram
    when a variant needs them. Returns the index and the data signature a model trained on it carries."""
    orders = tuple(mcfg.ngram_orders)
    tiers = {o: HotTier(data_dir, meta, mcfg.hot_size, o) for o in orders}
    counts = None
    if variants.needs_counts(mcfg):
        counts = {o: (np.load(os.path.join(data_dir, f'ngrams_o{o}_keys.npy')),
                      np.load(os.path.join(data_dir, f'ngrams_o{o}_counts.npy'))) for o in orders}
    index = NgramIndex(load_canonical(data_dir, meta), {o: t.sorted_index() for o, t in tiers.items()}, orders, counts)
    return index, data_signature(meta, {str(o): t.sha256 for o, t in tiers.items()})

def build_model(mcfg, index, noise=None):
    """The one place a GPT is built (train, eval, key stability, bench): config errors become ConfigError."""
    try:
        return GPT(mcfg, index=index, noise=noise)
    except AssertionError as e:
        raise ConfigError(f"bad model config: {e}") from None

def data_signature(meta, hot_sha):
    return {**tokenizer_signature(meta), 'hot_size_keys_sha256': hot_sha}

def check_signature(saved, current, what):
    diff = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current) if saved.get(k) != current.get(k)}
    if diff:
        lines = '\n'.join(f"    {k}: {what} has {a!r}, data dir has {b!r}" for k, (a, b) in sorted(diff.items()))
        raise DataError(f"{what} does not match the data dir:\n{lines}\n"
                        f"  Use the data dir the {what} was trained on (--data_dir), or retrain.")

def load_checkpoint(path, hint="Train first, or set init_from='scratch'."):
    if not os.path.exists(path):
        raise DataError(f"no checkpoint at {path}. {hint}")
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if ckpt.get('format_version') != CKPT_VERSION:
        raise DataError(f"{path} has checkpoint format {ckpt.get('format_version')}, this code reads {CKPT_VERSION}.")
    return ckpt

def load_weights(model, state, what):
    """load_state_dict with a message that names what differs in shape."""
    own = model.state_dict()
    bad = [f"{k}: {what} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and own[k].shape != v.shape]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if bad or missing or unexpected:
        raise DataError(f"{what} does not fit this model:\n  " + '\n  '.join(
            bad + [f"missing in {what}: {k}" for k in missing[:5]] + [f"not in model: {k}" for k in unexpected[:5]]) +
            "\n  Use the checkpoint's own config (its model args are saved in it).")
    model.load_state_dict(state)


class CheckpointWriter:
    """Saves off the training loop's critical path: save() copies the state into CPU buffers (kept and
    reused from one save to the next, pinned on CUDA, filled by non-blocking copies that the stream
    orders before the next optimizer step) and returns; a background thread waits for the copies and
    writes the file with data.save_torch (temp file, fsync, rename: a crash mid-write leaves the
    previous file). One write at a time: a save first waits for the previous one; wait() makes the
    last one durable and re-raises a failed write in the training process."""

    def __init__(self):
        self.thread, self.error, self.buffers = None, None, {}

    def save(self, path, state):
        self.wait()
        leaves, spec = tree_flatten(state)
        bufs = self.buffers.setdefault(str(spec), {})
        copied = []
        for i, v in enumerate(leaves):
            if isinstance(v, torch.Tensor):
                b = bufs.get(i)
                if b is None or b.shape != v.shape or b.dtype != v.dtype:
                    b = bufs[i] = torch.empty(v.shape, dtype=v.dtype, pin_memory=v.is_cuda)
                copied.append(b.copy_(v.detach(), non_blocking=v.is_cuda))
            else:
                copied.append(v)
        done = torch.cuda.Event() if any(isinstance(v, torch.Tensor) and v.is_cuda for v in leaves) else None
        if done is not None:
            done.record()
        snapshot = tree_unflatten(copied, spec)
        self.thread = threading.Thread(target=self._write, args=(path, snapshot, done), name='checkpoint-writer')
        self.thread.start()

    def _write(self, path, snapshot, done):
        try:
            if done is not None:
                done.synchronize()
            save_torch(path, snapshot)
        except BaseException as e:      # handed to the training thread by wait()
            self.error = e

    def wait(self):
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error
