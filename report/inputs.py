"""
What a report reads: the paper's reference numbers, a run dir's files (each checked: a damaged run is skipped,
not a traceback), its snapshots.
"""
import glob
import json
import os
import re

from engramlib.data import DataError
from engram import MEMORY
from engramlib.fsafe import regular_file

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'reference', 'paper_tables.json')

def paper():
    with open(REFERENCE) as f:
        return json.load(f)

def config_name(cfg):
    """Runs of one config across seeds share a name: the wandb group, else out_dir minus a _s<seed> suffix."""
    return cfg.get('wandb_group') or re.sub(r'_s\d+$', '', os.path.basename(str(cfg.get('out_dir', 'run')).rstrip('/')))

RUN_CONFIG = {'data_dir': str, 'out_dir': str, 'seed': 'count', 'block_size': 'positive', 'memory': MEMORY,
              'hot_size': 'positive', 'table_size': 'positive', 'engram_layers': list, 'max_iters': 'count'}

EVAL_ROW = ('val_loss', 'hot_cold_delta', 'n_positions')

def bad_config_value(v, want):
    if want in ('count', 'positive'):
        return not (type(v) is int and v >= (want == 'positive'))
    return v not in tuple(want) if isinstance(want, (tuple, dict)) else not isinstance(v, want)   # dict: a registry

def read_json(path, what):
    """A run's JSON file, or a DataError naming it (the caller skips the run)."""
    try:
        regular_file(path, what)
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is missing or damaged ({type(e).__name__}: {str(e)[:120]}); it is not a complete run dir.") from None

def snapshot_paths(run_dir):
    return sorted(glob.glob(os.path.join(run_dir, 'snapshots', 'iter_*.pt')))
