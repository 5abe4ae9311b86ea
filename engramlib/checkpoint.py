"""
Checkpoint I/O: files that carry a checksum of their content, written in the background (CheckpointWriter),
read back with messages that say what is wrong (the format version, the schema, the checksum) and what differs
from the data dir (check_signature). Building a model from one is factory.py's.
"""
import hashlib
import os
import pickle
import threading
import zipfile

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from engramlib.data import DataError, atomic_write, regular_file
from engramlib.fsafe import own_subdir

CKPT_VERSION = 2        # 2: a 'checksum' of the content

HOT_TIER_KEY = 'hot_size_keys_sha256'      # the hot tier's checksums in a data signature

def check_signature(saved, current, what, hot_tier=True):
    """A checkpoint's data signature against the data dir's. hot_tier=False: a model not held to the data dir's hot
    tier (Hash and the baseline do not route by it: a fine-tune's base on any data dir; a model labelled post hoc
    with another N_hot) is checked without it. The one place this rule is written."""
    keys = (set(saved) | set(current)) - (set() if hot_tier else {HOT_TIER_KEY})
    diff = {k: (saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)}
    if diff:
        lines = '\n'.join(f"    {k}: {what} has {a!r}, data dir has {b!r}" for k, (a, b) in sorted(diff.items()))
        raise DataError(f"{what} does not match the data dir:\n{lines}\n"
                        f"  Use the data dir the {what} was trained on (--data_dir), or retrain.")

def state_checksum(state):
    """sha256 over a checkpoint's content: its structure, every tensor's dtype, shape and bytes, every other
    value's repr. A flipped byte anywhere (weights, AdamW moments, iter, config) changes it."""
    leaves, spec = tree_flatten({k: v for k, v in state.items() if k != 'checksum'})
    h = hashlib.sha256(str(spec).encode())
    for v in leaves:
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f'{t.dtype}{tuple(t.shape)}'.encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()

def save_checkpoint(path, state):
    """Atomic write of a state with its checksum; the file replaces the previous one only after it has
    been read back and its checksum verified (so a bad write never replaces a good checkpoint)."""
    state = {**state, 'checksum': state_checksum(state)}
    atomic_write(path, lambda f: torch.save(state, f), check=lambda tmp: read_checkpoint(tmp, shown=path))

def read_checkpoint(path, shown=None):
    """torch.load (weights_only) with every failure a DataError, then the checksum check."""
    shown = shown or path
    regular_file(path, 'checkpoint')
    if not zipfile.is_zipfile(path):          # torch.save writes a zip; anything else is cut short or not ours
        raise DataError(f"{shown} is not a readable checkpoint (truncated, empty or damaged: not a torch zip file). "
                        f"Use an earlier checkpoint, or retrain.")
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        raise DataError(f"refused to load {shown}: it holds objects other than tensors and plain values "
                        f"({str(e).splitlines()[0][:200]}). Only load checkpoints this repo wrote.") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise DataError(f"{shown} is not a readable checkpoint (truncated or damaged: {type(e).__name__}: "
                        f"{str(e)[:200]}). Use an earlier checkpoint, or retrain.") from None
    if not isinstance(ckpt, dict) or ckpt.get('format_version') != CKPT_VERSION:
        version = ckpt.get('format_version') if isinstance(ckpt, dict) else None
        raise DataError(f"{shown} has checkpoint format {version}, this code reads {CKPT_VERSION}.")
    if ckpt.get('checksum') != state_checksum(ckpt):
        raise DataError(f"{shown} is damaged: its content does not match its checksum. Use an earlier "
                        f"checkpoint, or retrain.")
    return ckpt

def load_checkpoint(path, hint="Train first, or set init_from='scratch'.", known_args=None, where=''):
    """A checkpoint this repo wrote: there, whole (checksum), every key its readers take (the schema). known_args:
    the model settings this code can build (factory.py's), checked first: a checkpoint naming another is refused
    (`where`: where the code that wrote it is)."""
    if not os.path.exists(path):
        raise DataError(f"no checkpoint at {path}. {hint}")
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory, not a checkpoint; pass the file inside it, e.g. {os.path.join(path, 'ckpt.pt')}")
    ckpt = read_checkpoint(path)
    args = ckpt.get('model_args', {})
    unknown = sorted(set(args) - set(known_args)) if isinstance(args, dict) and known_args is not None else []
    if unknown:
        raise DataError(f"{path} has model settings this code does not know ({', '.join(map(str, unknown[:4]))}). "
                        f"Only load checkpoints this repo wrote{where}.")
    check_checkpoint_schema(path, ckpt)
    return ckpt

# What every reader of a checkpoint takes from it (train's resume, eval, sample, bench), each with its test: a
# checkpoint that passes its checksum but lacks one (crafted, or from a foreign tool) is refused here, before anything
# is written (a resume cuts metrics.jsonl back to iter_num: a wrong one must never reach that).
# The keys read inside 'config' and 'model_args' are listed too (tests/test_trust.py walks the readers' code for them).
CONFIG_READ = {'data_dir': str, 'dtype': str, 'eval_batch_size': int, 'val_windows': int}
CKPT_SCHEMA = {
    'model_args': (lambda v: isinstance(v, dict) and type(v.get('hot_size')) is int, 'an object with hot_size'),
    'model': (lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()), 'tensors by name'),
    'config': (lambda v: isinstance(v, dict) and all(type(v.get(k)) is t for k, t in CONFIG_READ.items()),
               f"an object with {', '.join(CONFIG_READ)}"),
    'data_signature': (lambda v: isinstance(v, dict), 'an object'),
    'iter_num': (lambda v: type(v) is int and v >= 0, 'an integer >= 0'),
}
CKPT_OPTIONAL = {
    'optimizer': (lambda v: isinstance(v, dict) and {'state', 'param_groups'} <= set(v), 'an optimizer state'),
    'best_val_loss': (lambda v: type(v) in (int, float), 'a number'),
    'rng': (lambda v: isinstance(v, dict) and isinstance(v.get('torch'), torch.Tensor)
            and (v.get('cuda') is None or isinstance(v['cuda'], torch.Tensor)), 'RNG states'),
    'data_files': (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(s, str) for k, s in v.items()),
                   'checksums by file name'),
    'wandb_id': (lambda v: v is None or isinstance(v, str), 'a wandb run id or None'),
}

def check_checkpoint_schema(path, ckpt):
    for key, (ok, want) in {**CKPT_SCHEMA, **CKPT_OPTIONAL}.items():
        if key in ckpt and not ok(ckpt[key]) or key in CKPT_SCHEMA and key not in ckpt:
            got = 'missing' if key not in ckpt else type(ckpt[key]).__name__
            raise DataError(f"{path}: '{key}' must be {want}, got {got}. Only load checkpoints this repo wrote.")

def nonfinite(named_tensors):
    """Names of floating-point tensors with a NaN or inf (one host sync for all of them)."""
    named = [(n, t) for n, t in named_tensors if torch.is_floating_point(t)]
    if not named or torch.stack([torch.isfinite(t).all() for _, t in named]).all():
        return []
    return [n for n, t in named if not torch.isfinite(t).all()]

def load_weights(model, state, what, allow_missing=()):
    """load_state_dict with a message that names what differs in shape (allow_missing: keys the state
    may lack, e.g. new adapters of a fine-tune)."""
    own = model.state_dict()
    bad = [f"{k}: {what} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and own[k].shape != v.shape]
    missing, unexpected = sorted(set(own) - set(state) - set(allow_missing)), sorted(set(state) - set(own))
    if bad or missing or unexpected:
        raise DataError(f"{what} does not fit this model:\n  " + '\n  '.join(
            bad + [f"missing in {what}: {k}" for k in missing[:5]] + [f"not in model: {k}" for k in unexpected[:5]]) +
            "\n  Use the checkpoint's own config (its model args are saved in it).")
    model.load_state_dict(state, strict=not allow_missing)


class CheckpointWriter:
    """Saves off the training loop's critical path: save() copies the state into CPU buffers (kept and
    reused from one save to the next, pinned on CUDA, filled by non-blocking copies that the stream
    orders before the next optimizer step) and returns; a background thread waits for the copies and
    writes it with save_checkpoint (checksum, temp file, fsync, read back and verified, rename: a crash
    or a bad write leaves the previous file). One write at a time: a save first waits for the previous one; wait() makes the
    last one durable and re-raises a failed write in the training process."""

    def __init__(self):
        self.thread, self.error, self.buffers = None, None, {}

    def save(self, path, state):
        self.wait()
        leaves, spec = tree_flatten(state)
        bufs = self.buffers.setdefault(str(spec), {})
        copied, seen = [], {}
        for i, v in enumerate(leaves):
            if isinstance(v, torch.Tensor):
                view = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
                if view in seen:            # a tied weight (wte = lm_head): one buffer, so torch.save stores it once
                    copied.append(copied[seen[view]])
                    continue
                seen[view] = i
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
            save_checkpoint(path, snapshot)
        except BaseException as e:      # handed to the training thread by check() / wait(), as one line for the user
            why = e if isinstance(e, DataError) else f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            self.error = DataError(f"writing {path} failed ({why}); the previous {os.path.basename(path)} is untouched. "
                                   f"Free disk space (or fix the cause) and continue with --init_from='resume'.")

    def check(self):
        """Raise a failed background write now (at a step boundary), without waiting for a running one."""
        if self.thread is not None and not self.thread.is_alive():
            self.wait()

    def wait(self):
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class Checkpointer:
    """A run's checkpoints: ckpt.pt (everything an exact resume needs), best.pt and the snapshots (the weights, with
    what eval needs to rebuild the model). Nothing non-finite is ever saved, so "the last good checkpoint" stays true;
    rank 0 writes, in the background (CheckpointWriter). describe(): the model settings, the config, the data
    signature and the token files' checksums, as they are when a checkpoint is saved."""

    def __init__(self, out_dir, model, optimizer, tables, describe, master, cuda):
        self.out_dir, self.path = out_dir, os.path.join(out_dir, 'ckpt.pt')
        self.model, self.optimizer, self.tables, self.describe = model, optimizer, tables, describe
        self.master, self.cuda = master, cuda
        self.writer = CheckpointWriter()

    def weights(self, iter_num, **extra):
        return {'format_version': CKPT_VERSION, 'iter_num': iter_num, 'model': self.model.state_dict(), **self.describe(),
                **extra}

    def check_finite(self, what, iter_num):
        named = list(self.model.named_parameters()) + [
            (f'optimizer state {k} of param {i}', v) for i, st in enumerate(self.optimizer.state.values())
            for k, v in st.items() if isinstance(v, torch.Tensor) and v.dim() > 0] + self.tables.named_tensors()
        bad = nonfinite(named)
        if bad:
            raise FloatingPointError(f"non-finite values in {', '.join(bad[:3])} at iter {iter_num}; {what} not saved. "
                                     f"The last good checkpoint {self.path} is untouched.")

    def save(self, iter_num, weights_only, best_val_loss, wandb_id, before_write):
        """ckpt.pt; with weights_only (a finished run with final_ckpt='weights'), the weights alone: a finished run
        needs no AdamW moments to be evaluated. before_write(): the last check before anything is written."""
        self.tables.before_read()
        self.check_finite(self.path, iter_num)
        before_write()
        if not self.master:                 # the ranks hold the same state: one writer
            return
        if weights_only:
            self.writer.save(self.path, self.weights(iter_num))
            return
        self.writer.save(self.path, {
            **self.weights(iter_num), 'best_val_loss': best_val_loss,
            'optimizer': self.tables.optimizer_state(self.optimizer), 'wandb_id': wandb_id,
            'rng': {'torch': torch.get_rng_state(), 'cuda': torch.cuda.get_rng_state() if self.cuda else None}})

    def save_best(self, iter_num, val_loss):
        self.check_finite('best.pt', iter_num)
        self.writer.save(os.path.join(self.out_dir, 'best.pt'), self.weights(iter_num, val_loss=val_loss))

    def save_snapshot(self, iter_num):
        self.writer.save(os.path.join(own_subdir(self.out_dir, 'snapshots'), f'iter_{iter_num:06d}.pt'), self.weights(iter_num))
