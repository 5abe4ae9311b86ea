"""
nanoGPT's configurator, made strict: `python train.py configs/x.py --key=value ...`.
A config file is plain Python that assigns known keys; --key=value overrides are parsed with
literal_eval (falling back to a string) and must keep the default's type. Unknown keys, wrong types,
missing files and syntax errors stop the run with a message that says how to fix them.
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
    """Update dict `cfg` (train.py's globals) in place for the known `keys`. Returns the applied changes."""
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

def print_help(script):
    """`--help` from the script's own config block (its assignments and their comments, grouped by the
    section comments), read as text: nothing is imported, so help is instant."""
    import ast
    src = open(script).read()
    start = src.index('# config:')
    block = src[start:src.index('config_keys =', start)]
    doc = ast.get_docstring(ast.parse(src)) or ''
    print(doc.strip() + '\n\nusage: python ' + os.path.basename(script) + ' [config.py ...] [--key=value ...]\n'
          '  A config file is Python that sets keys; later files and --key=value overrides win.\n')
    last = ''
    for line in block.splitlines()[1:]:
        if line.startswith('#'):
            print(('' if last.startswith('#') else '\n') + line.lstrip('# ').rstrip())
        elif '=' in line:
            assign, _, comment = line.partition('#')
            key, _, default = assign.partition('=')
            print(f"  {'--' + key.strip() + '=' + default.strip():<36} {comment.strip()}")
        last = line
