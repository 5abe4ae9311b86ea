"""
nanoGPT's configurator, made strict: `python train.py configs/x.py --key=value ...`.
A config file is plain Python that assigns known keys; --key=value overrides are parsed with
literal_eval (falling back to a string) and must keep the default's type. Unknown keys, wrong types,
missing files and syntax errors stop the run with a message that says how to fix them. The keys, their
defaults and their allowed values are declared next to each part (engramlib/options.py).
"""
import argparse
import difflib
import math
import os
import traceback
from ast import literal_eval

class ConfigError(Exception):
    pass

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The scripts' argparse --help: the module docstring as written and every default (once: not where the help
    says it already, nor a bare None)."""

    def _get_help_string(self, action):
        if 'default' in (action.help or '') or action.default is None:
            return action.help
        return super()._get_help_string(action)

def closest(key, known):
    m = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f" Did you mean '{m[0]}'?" if m else ''

def _coerce(key, value, default):
    """value with the type of `default`, or ConfigError."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"--{key} must be a finite number, got {value!r}")
    if isinstance(default, bool) or isinstance(value, bool):
        if type(value) is not type(default):
            raise ConfigError(f"--{key} expects {type(default).__name__} (like {default!r}), got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list, int, str)):
        value = (value,) if isinstance(value, (int, str)) else value
        if default and any(type(v) is not type(default[0]) for v in value):
            raise ConfigError(f"--{key} expects a tuple of {type(default[0]).__name__} (like {default!r}), got {value!r}")
        return type(default)(value)
    if type(value) is not type(default):
        raise ConfigError(f"--{key} expects {type(default).__name__} (like {default!r}), got {value!r} "
                          f"({type(value).__name__})")
    return value

def run_config_file(path, scope=None, chain=()):
    """The names a config file (plain Python) assigns; whatever goes wrong in it is a ConfigError naming the file.
    Inside it, include('base.py') runs another config first, its path relative to the including file's real location
    (so a config means the same from any current dir, and through a link to it: Python finds a linked script's
    modules beside the script itself, not beside the link)."""
    if not os.path.exists(path):
        here = os.path.dirname(os.path.abspath(__file__))
        hint = (f"; paths are relative to the current dir: run from the repo root (cd {here})"
                if not os.path.isabs(path) and os.path.exists(os.path.join(here, path)) else ' (configs are in configs/, e.g. configs/tiny.py)')
        raise ConfigError(f"config file {path} does not exist{hint}" + (f" (included by {chain[-1]})" if chain else ''))
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} is not a regular file")
    if os.path.realpath(path) in map(os.path.realpath, chain):
        raise ConfigError(f"config file {path} includes itself: {' -> '.join(chain + (path,))}")
    scope = {} if scope is None else scope
    outer = scope.get('include')
    scope['include'] = lambda rel: run_config_file(os.path.join(os.path.dirname(os.path.realpath(path)), rel), scope, chain + (path,))
    try:
        with open(path, encoding='utf-8') as f:
            exec(compile(f.read(), path, 'exec'), scope)
    except ConfigError:
        raise
    except SyntaxError as e:
        raise ConfigError(f"config file {path} has a syntax error at line {e.lineno}: {e.msg}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except SystemExit:
        raise ConfigError(f"config file {path} called exit(); a config only assigns keys") from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:          # any other: a config is data that happens to be Python (os._exit cannot be caught)
        line = next((t.lineno for t in traceback.extract_tb(e.__traceback__) if t.filename == path), '?')
        raise ConfigError(f"config file {path} failed at line {line}: {type(e).__name__}: {e}") from None
    finally:
        scope['include'] = outer            # the includer's own include, back (None at the top: dropped below)
    return scope

def load_config(path):
    """A config file's settings: the names it (and what it includes) assigns, without Python's own."""
    return {k: v for k, v in run_config_file(path).items() if not k.startswith('__') and k != 'include'}

def apply_config(cfg, argv, keys):
    """Update dict `cfg` (train.default_config()) in place for the known `keys`, from each config file and
    --key=value override in turn. Returns the applied changes."""
    keys = sorted(keys)
    changes = {}
    for arg in argv:
        if not arg.startswith('--'):
            for k, v in load_config(arg).items():
                if k.startswith('_') or k == '__builtins__' or type(v).__name__ == 'module' or callable(v) and k not in cfg:
                    continue                        # imports and helpers the file defines for itself
                if k not in cfg or k not in keys:
                    raise ConfigError(f"config file {arg} sets unknown key '{k}'.{closest(k, keys)}")
                if callable(v):
                    raise ConfigError(f"config file {arg} sets {k} to a function; it takes a value like {cfg[k]!r}")
                cfg[k] = changes[k] = _coerce(k, v, cfg[k])
        else:
            key, sep, val = arg[2:].partition('=')
            if not sep:
                raise ConfigError(f"override {arg} must look like --key=value")
            if key not in keys:
                raise ConfigError(f"unknown config key '{key}'.{closest(key, keys)}")
            try:
                value = literal_eval(val)
            except (SyntaxError, ValueError, MemoryError, RecursionError):
                value = val
            if isinstance(cfg[key], str) and not isinstance(value, str):
                value = val                 # a path or name as typed (--out_dir=2024, a quote inside a path)
            cfg[key] = changes[key] = _coerce(key, value, cfg[key])
    return changes

def override(key, value):
    """--key=value as apply_config reads it back exactly: a path with a quote, a space or a glob character included."""
    return f'--{key}={value!r}'

def parse_size(s):
    """'4GB', '500MB', '12.5G', '1024' (bytes) -> bytes."""
    s = s.strip().upper().removesuffix('B')
    mult = {'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}.get(s[-1:], 1)
    n = float(s[:-1] if s[-1:] in 'KMGT' else s)
    if not 0 < n < 2**60 / mult:
        raise ValueError(f"{s} is not a size in (0, 1 EiB)")
    return int(n * mult)
