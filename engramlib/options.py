"""
Every setting is declared once, next to the code that reads it: a part's module lists its options in a
Group (default, allowed values, one line of help); model.py declares the paper's as GPTConfig's fields and
extensions/__init__.py composes the config of a model with its extensions. train.py's settings, --help, type checks and
range checks are made from all of them (configurator.py reads config files and --key=value overrides against them).
"""
from dataclasses import field, make_dataclass

from configurator import ConfigError


class Option:
    """One setting: its default (whose type every value must keep), one line of help, and what it allows:
    choices (a tuple, or a registry dict whose keys are the choices), bounds at_least / above / at_most / below.
    run_only: a setting of this run, not of the experiment (where it writes, how it is split, logged, compiled):
    a resume may change it."""

    def __init__(self, default, help, choices=None, at_least=None, above=None, at_most=None, below=None, run_only=False):
        self.default, self.help, self._choices, self.run_only = default, help, choices, run_only
        self.at_least, self.above, self.at_most, self.below = at_least, above, at_most, below

    @property
    def choices(self):
        return tuple(self._choices) if self._choices is not None else None

    def error(self, key, v):
        """Why value v is not allowed, or None."""
        if self._choices is not None and v not in self.choices:
            return f"--{key} must be one of {self.choices}, got {v!r}"
        lo = '[' if self.at_least is not None else '(' if self.above is not None else None
        hi = ']' if self.at_most is not None else ')' if self.below is not None else None
        a = self.at_least if self.at_least is not None else self.above
        b = self.at_most if self.at_most is not None else self.below
        if lo and hi:
            ok = (v >= a if lo == '[' else v > a) and (v <= b if hi == ']' else v < b)
            return None if ok else f"--{key} must be in {lo}{a}, {b}{hi}, got {v!r}"
        if lo:
            return None if (v >= a if lo == '[' else v > a) else f"--{key} must be {'>=' if lo == '[' else '>'} {a}, got {v!r}"
        if hi:
            return None if (v <= b if hi == ']' else v < b) else f"--{key} must be {'<=' if hi == ']' else '<'} {b}, got {v!r}"
        return None


class Group:
    """The options of one part, under a title (--help's section). part: an extension's model settings, kept in their
    own object on a model config as config.<part>.<key> (config_class); GPTConfig's fields and the run's settings have
    none. check(c): the combinations the part refuses, raising ConfigError (c: a dict of every setting in scope, flat;
    a model group's check reads model keys only)."""

    def __init__(self, title, options, part=None, check=None):
        self.title, self.options, self.part, self.check = title, options, part, check


def check_values(groups, c):
    """Every option's own allowed values, then every group's combinations: ConfigError naming the key."""
    for g in groups:
        for k, opt in g.options.items():
            msg = opt.error(k, c[k])
            if msg:
                raise ConfigError(msg)
    for g in groups:
        if g.check is not None:
            g.check(c)


def merged(groups):
    """key -> Option over all groups; a key declared twice is a bug, refused here (at import)."""
    out = {}
    for g in groups:
        twice = sorted(set(g.options) & set(out))
        if twice:
            raise ValueError(f"settings declared twice: {twice} (in '{g.title}' and before it)")
        out.update(g.options)
    return out


def option(default, help, **allowed):
    """A dataclass field declared as an Option (GPTConfig's fields, model.py): its default, help and allowed values."""
    return field(default=default, metadata={'option': Option(default, help, **allowed)})


def fields_group(title, cls, keys, check=None):
    """The Group of some of a config class's option fields (declared with `option`)."""
    return Group(title, {k: cls.__dataclass_fields__[k].metadata['option'] for k in keys}, check=check)


def part_class(group, module):
    """An extension's own settings object: a frozen dataclass of its group's options (their defaults)."""
    fields = [(k, type(o.default), field(default=o.default)) for k, o in group.options.items()]
    return make_dataclass(group.part.title() + 'Config', fields, frozen=True, namespace={'__module__': module})


class Composed:
    """A model config: the paper's (base's fields) and each extension's settings in its own object, config.<part>.
    Checkpoints and run configs keep the settings flat, one key each (args / from_args): a key names its option
    wherever it is read, e.g. --moe_experts is config.moe.moe_experts."""
    parts = {}          # part name -> its Group

    @classmethod
    def keys(cls):
        """Every setting's key: base's fields, then each part's options."""
        own = [f for f in cls.__dataclass_fields__ if f not in cls.parts]
        return own + [k for g in cls.parts.values() for k in g.options]

    @classmethod
    def from_args(cls, **args):
        """The config of flat settings (a checkpoint's model_args); an unknown key is a TypeError, as a dataclass's."""
        parts = {p: cls.__dataclass_fields__[p].type(**{k: args.pop(k) for k in g.options if k in args})
                 for p, g in cls.parts.items()}
        return cls(**args, **parts)

    def args(self):
        """The flat settings, in keys()'s order (checkpoints' model_args)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in self.parts}
        for p in self.parts:
            out.update(vars(getattr(self, p)))
        return out


def config_class(name, base, groups, extensions, module):
    """base (the paper's config dataclass, with its `groups`) composed with one object per extension group
    (config.<group.part>, a part_class), carrying every group for validate() and `extensions`, the hooks that act
    on a model built from it (model.Extension)."""
    merged([*base.groups, *groups])                 # a key declared twice is refused
    parts = {g.part: g for g in groups if g.options}
    classes = {p: part_class(g, module) for p, g in parts.items()}
    fields = [(p, c, field(default_factory=c)) for p, c in classes.items()]
    return make_dataclass(name, fields, bases=(Composed, base), namespace={
        'groups': (*base.groups, *groups), 'extensions': tuple(extensions), 'parts': parts, '__module__': module})


def help_text(groups, doc, script):
    """--help: the script's docstring, then every key with its default and its help, grouped by part."""
    lines = [doc.strip(), '', f'usage: python {script} [config.py ...] [--key=value ...]',
             '  A config file is Python that sets keys; later files and --key=value overrides win.']
    for g in groups:
        lines += ['', g.title]
        for k, o in g.options.items():
            more = [repr(c) for c in o.choices or () if repr(c) not in o.help]       # kinds registered after the help was written
            lines.append(f"  {'--' + k + '=' + repr(o.default):<36} {o.help}" + (f" | also {', '.join(more)}" if more else ''))
    return '\n'.join(lines)
