"""
What a run may start from, in one place: its own checkpoint (--init_from='resume': the same experiment on the same
data, continued exactly) or another run's (--init_from=<ckpt.pt>: a fine-tune, whose model settings it takes), each
checked against the data dir by the data signature (engramlib/checkpoint.py) before anything is built or written.
"""
import json
import os

from engramlib.checkpoint import check_signature, load_weights
from configurator import ConfigError
from engramlib.data import DataError, atomic_write, read_metrics
from engram import has_hot_tier


def fine_tune_base(cfg, base, own=()):
    """The model settings of cfg that a fine-tune's base checkpoint changed: its model is this run's (the config's
    model keys follow it, but for `own`: the settings the fine-tune adds, e.g. adapters; read before the settings
    are checked, so they are checked as they will run)."""
    keep = ('vocab_size', *own)
    changed = {k: v for k, v in base['model_args'].items() if k in cfg and k not in keep and cfg[k] != v}
    for k, v in changed.items():
        cfg[k] = tuple(v) if isinstance(cfg[k], tuple) else v
    return sorted(changed)


def restore_optimizer(tables, optimizer, ckpt, path):
    """The checkpoint's AdamW state; one this run's optimizer cannot take (another table_optimizer, allowed by
    --resume_changes) is refused in one line."""
    try:
        tables.load_optimizer_state(optimizer, ckpt['optimizer'])
    except (ValueError, KeyError) as e:
        saved = ckpt['config'].get('table_optimizer', 'adamw')
        raise ConfigError(f"{path}'s optimizer state does not fit this run's optimizer ({str(e).splitlines()[0]}); "
                          f"it was trained with --table_optimizer='{saved}': resume with it, or start a new run") from None

def load_base(model, base, path, extensions):
    """Fine-tuning: the base run's weights (as the extensions name them: adapters wrap layers)."""
    state, missing = base['model'], []
    for e in extensions:
        state, more = e.base_state(state, model)
        missing += more
    load_weights(model, state, f"checkpoint {path}", allow_missing=missing)
    for e in extensions:
        e.after_base(model)

def check_base(base, signature, memory, path):
    """A fine-tune's base against this data dir: its signature, less the hot tier for Hash and the baseline (they do
    not route by it: any data dir's will do)."""
    check_signature(base['data_signature'], signature, f"checkpoint {path}", hot_tier=has_hot_tier(memory))


def check_resume(ckpt, cfg, signature, data_files, metrics, path, run_keys, defaults):
    """The run's own checkpoint against this run: the data signature, the experiment (every key but run_keys and
    those resume_changes lists), the metrics it continues and the token files it trained and evaluated on."""
    check_signature(ckpt['data_signature'], signature, f"checkpoint {path}")
    if 'optimizer' not in ckpt and not cfg['eval_only'] and ckpt['iter_num'] < cfg['max_iters']:
        raise DataError(f"{path} holds the weights only (a finished run saved with final_ckpt='weights'), so "
                        f"training cannot resume from it. Evaluate or sample it, or retrain with --final_ckpt='full'.")
    diff = resume_differences(ckpt['config'], cfg, run_keys, defaults)
    if diff:
        raise ConfigError(f"resuming {path} with another experiment:\n" + '\n'.join(
            f"    {k}: checkpoint {a!r}, now {b!r}" for k, a, b in ((k, *v) for k, v in sorted(diff.items()))) +
            f"\n  Resume with the checkpoint's values, or allow the change explicitly: "
            f"--resume_changes=\"{tuple(sorted(diff))}\"")
    if not os.path.exists(metrics):
        raise DataError(f"{metrics} is missing: the resumed run would log from iter {ckpt['iter_num']} on with no "
                        f"history before it. Restore it, or start over with --overwrite=True.")
    read_metrics(metrics)
    # a data dir rebuilt on another corpus can keep the signature, tokenizer and hot tier, yet change every window
    saved = ckpt.get('data_files')
    if saved is not None and saved != data_files and 'data_files' not in cfg['resume_changes']:
        raise ConfigError(f"resuming {path} on other token files ({', '.join(k for k in data_files if saved.get(k) != data_files[k])} "
                          f"changed since the checkpoint): its metrics would mix two validation sets. Resume on the "
                          f"checkpoint's data, or allow it explicitly: --resume_changes=\"('data_files',)\"")


def resume_differences(saved, cfg, run_keys, defaults):
    """Experiment keys that differ between a checkpoint's config and this run's (the global batch counts,
    not its split; data is checked by its signature, not its path). A key the checkpoint lacks is a setting added
    since it was written: it ran with that setting's default."""
    saved = {**defaults, **saved}
    diff = {k: (saved.get(k), cfg[k]) for k in cfg if k not in run_keys and k not in cfg['resume_changes']
            and saved.get(k) != cfg[k] and not (isinstance(cfg[k], tuple) and tuple(saved.get(k) or ()) == cfg[k])}
    batch = lambda c: c['batch_size'] * c['gradient_accumulation_steps']
    if 'global_batch' not in cfg['resume_changes'] and batch(saved) != batch(cfg):
        diff['global_batch'] = (batch(saved), batch(cfg))
    return diff


def keep_on_resume(row, ckpt_iter):
    """The checkpoint of iter k is saved after eval k and before train step k: rows logged later
    (a crash between a log and the next save) are redone by the resumed run."""
    return row['iter'] <= ckpt_iter if row['kind'] == 'eval' else row['iter'] < ckpt_iter


def truncate_metrics(path, ckpt_iter):
    if not os.path.exists(path):
        return
    rows = [json.dumps(r, sort_keys=True) + '\n' for r in read_metrics(path) if keep_on_resume(r, ckpt_iter)]
    atomic_write(path, lambda f: f.writelines(rows), mode='w')
