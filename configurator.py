"""
nanoGPT's configurator, made strict: `python train.py configs/x.py --key=value ...`.
A config file is plain Python that assigns known keys; --key=value overrides are parsed with
literal_eval (falling back to a string) and must keep the default's type. Unknown keys, wrong types,
missing files and syntax errors stop the run with a message that says how to fix them. The keys, their
defaults and their allowed values are declared next to each part (options.py).
"""
import argparse
import difflib
import os
from ast import literal_eval

class ConfigError(Exception):
    pass

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The scripts' argparse --help: the module docstring as written and every default."""

def _closest(key, known):
    m = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f" Did you mean '{m[0]}'?" if m else ''

def _coerce(key, value, default):
    """value with the type of `default`, or ConfigError."""
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

def apply_config(cfg, argv, keys):
    """Update dict `cfg` (train.default_config()) in place for the known `keys`, from each config file and
    --key=value override in turn. Returns the applied changes."""
    keys = sorted(keys)
    changes = {}
    for arg in argv:
        if not arg.startswith('--'):
            if not os.path.exists(arg):
                raise ConfigError(f"config file {arg} does not exist (configs are in configs/, e.g. configs/tiny.py)")
            scope = {}
            try:
                with open(arg) as f:
                    exec(compile(f.read(), arg, 'exec'), scope)
            except SyntaxError as e:
                raise ConfigError(f"config file {arg} has a syntax error at line {e.lineno}: {e.msg}") from None
            for k, v in scope.items():
                if k.startswith('_') or k == '__builtins__' or callable(v) or type(v).__name__ == 'module':
                    continue
                if k not in cfg or k not in keys:
                    raise ConfigError(f"config file {arg} sets unknown key '{k}'.{_closest(k, keys)}")
                cfg[k] = changes[k] = _coerce(k, v, cfg[k])
        else:
            key, sep, val = arg[2:].partition('=')
            if not sep:
                raise ConfigError(f"override {arg} must look like --key=value")
            if key not in keys:
                raise ConfigError(f"unknown config key '{key}'.{_closest(key, keys)}")
            try:
                value = literal_eval(val)
            except (SyntaxError, ValueError):
                value = val
            cfg[key] = changes[key] = _coerce(key, value, cfg[key])
    return changes

def parse_size(s):
    """'4GB', '500MB', '12.5G', '1024' (bytes) -> bytes."""
    s = s.strip().upper().removesuffix('B')
    mult = {'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}.get(s[-1:], 1)
    return int(float(s[:-1] if s[-1:] in 'KMGT' else s) * mult)
