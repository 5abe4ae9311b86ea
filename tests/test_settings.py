"""One source of truth for every setting (each part declares its options once, engramlib/options.py), and each new
part, memory kind or report table one registration (the house's layout is tests/test_layout.py's)."""
import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

import extensions
import model
from engramlib import options
import train
from configurator import ConfigError
from conftest import ROOT
from test_layout import MODULES
from test_train import micro_config, rows

CODE_DIRS = ('engramlib', 'extensions', 'mdx')     # a clone's code: the .py files at the root and in these


def all_groups():
    return [g for g in {id(g): g for g in train.SETTINGS + extensions.MODEL_GROUPS}.values()]


def test_every_setting_is_declared_once_with_help_and_a_default_of_its_type():
    keys = [k for g in all_groups() for k in g.options]
    assert len(keys) == len(set(keys)) == len(train.config_keys) + 1       # + vocab_size, from the data
    for g in all_groups():
        for k, o in g.options.items():
            assert len(o.help) >= 8, f"{k} has no help"
            assert o.error(k, o.default) is None, f"{k}'s default {o.default!r} is not allowed by its own option"
    assert train.DEFAULTS['memory'] == model.GPTConfig().memory == 'nine'          # one default per name
    assert train.DEFAULTS['table_size'] == model.GPTConfig().table_size == 400_000


def test_a_setting_declared_twice_is_refused():
    a = options.Group('a', {'x': options.Option(1, 'the x of a')})
    b = options.Group('b', {'x': options.Option(2, 'the x of b')})
    with pytest.raises(ValueError, match=r"declared twice: \['x'\]"):
        options.merged([a, b])


def test_no_module_assigns_a_setting_outside_its_declaration():
    """The old way (a global per setting in train.py, a plain field per setting in GPTConfig) would declare it twice;
    GPTConfig's fields are declarations, `option(default, help, ...)`."""
    keys = set(train.config_keys) | {'vocab_size'}
    for path in MODULES:
        tree = ast.parse(open(os.path.join(ROOT, path)).read())
        names = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                 for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        names |= {n.target.id for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body
                  if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                  and not (isinstance(n.value, ast.Call) and getattr(n.value.func, 'id', None) == 'option')}
        assert not names & keys, f"{path} defines {sorted(names & keys)} again"


@pytest.mark.parametrize('key, value, message', [
    ('table_size', 0, '--table_size must be > 0, got 0'),
    ('hot_dropout', 1.0, r'--hot_dropout must be in \[0, 1\), got 1.0'),
    ('hot_fingerprint_bits', 33, r'--hot_fingerprint_bits must be in \[0, 32\], got 33'),
    ('ffn', 'moe2', r"--ffn must be one of \('mlp', 'moe', 'pkm'\), got 'moe2'"),
])
def test_train_and_the_model_refuse_a_value_with_the_same_check(key, value, message):
    with pytest.raises(ConfigError, match=message):
        train.validate_config({**train.default_config(), key: value})
    with pytest.raises(ConfigError, match=message):
        extensions.ModelConfig.from_args(**{key: value}).validate()


def test_help_groups_every_setting_under_its_part():
    text = options.help_text(train.SETTINGS, 'doc', 'train.py')
    for g in train.SETTINGS:
        assert g.title in text
    assert text.index('--moe_router') > text.index("mixture of experts (ffn='moe')") > text.index('--memory=')


def test_gpt_config_is_the_paper_model_declared_in_model_py_with_at_most_24_fields():
    """A static dataclass (a class statement in model.py, readable top to bottom), the paper's settings only; the
    extensions' settings are ModelConfig's (extensions/__init__.py), which extends it."""
    tree = ast.parse(open(os.path.join(ROOT, 'model.py')).read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == 'GPTConfig')
    declared = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]
    assert declared == list(model.GPTConfig.__dataclass_fields__) and len(declared) <= 24
    assert issubclass(extensions.ModelConfig, model.GPTConfig) and not model.GPTConfig.extensions
    with pytest.raises(TypeError):
        model.GPTConfig(hot_collision=2)


def test_each_extension_keeps_its_settings_in_its_own_object_and_checkpoints_keep_them_flat():
    """ModelConfig is GPTConfig's fields plus one object per extension (config.<part>.<key>), not one flat class;
    what a checkpoint stores (args) is the flat settings in the order it always was, and from_args reads it back."""
    M, declared = extensions.ModelConfig, list(model.GPTConfig.__dataclass_fields__)
    own = list(M.__dataclass_fields__)
    assert own[:len(declared)] == declared
    assert own[len(declared):] == ['variants', 'embed', 'lsh', 'sketch', 'moe', 'pkm', 'adapters']
    cfg = M.from_args(moe_experts=8, hot_collision=2, adapter='cslora', n_embd=384)
    cfg.validate()
    assert (cfg.moe.moe_experts, cfg.variants.hot_collision, cfg.adapters.adapter, cfg.n_embd) == (8, 2, 'cslora', 384)
    with pytest.raises(ConfigError, match='--moe_experts must be > 0'):
        M.from_args(moe_experts=0).validate()                               # validate() sees the parts' settings
    assert not hasattr(cfg, 'moe_experts') and cfg.pkm == M().pkm         # not flattened; the others at their defaults
    flat = cfg.args()
    assert list(flat) == M.keys() == [*declared, *(k for g in M.parts.values() for k in g.options)]
    assert len(flat) == 63 and M.from_args(**flat) == cfg and flat['moe_experts'] == 8
    assert M.from_args(**{**flat, 'moe_experts': 4}) != cfg               # a part's setting takes part in equality
    with pytest.raises(TypeError):
        M.from_args(moe_expert=8)                                           # an unknown key, as a dataclass refuses it
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.moe.moe_experts = 2                                             # read-only: settings are chosen at construction


PART = '''"""A throw-away FFN kind: GPT-2's MLP scaled by a factor (tests/test_settings.py)."""
from layers import MLP
from engramlib.options import Group, Option


class ScaledMLP(MLP):
    def __init__(self, config, layer_idx=0):
        super().__init__(config, layer_idx)
        self.scale = config.scaled.mlp_scale

    def forward(self, x, fwd):
        return self.scale * super().forward(x, fwd)


OPTIONS = Group("scaled MLP (ffn='scaled')", dict(mlp_scale=Option(1.0, 'scaled: the factor of the MLP output', above=0)),
                part='scaled')
'''


def test_a_new_part_is_one_module_plus_one_register_line(tmp_path, gen_data):
    """README "New model parts", done as written: the module, then one line in extensions/__init__.py; train.py's settings,
    --help, checks, the config and the run follow."""
    repo = tmp_path / 'repo'                  # a clone's code, where the user adds the part
    shutil.copytree(ROOT, repo, ignore=lambda d, names: [n for n in names if not (n.endswith('.py') or n in CODE_DIRS)])
    (repo / 'extensions' / 'scaled_mlp.py').write_text(PART)
    src = (repo / 'extensions' / '__init__.py').read_text()
    line = "register(FFN, 'pkm', pkm.MLPWithPKM, pkm.OPTIONS)\n"
    assert line in src
    (repo / 'extensions' / '__init__.py').write_text(src.replace(line, line + "from extensions import scaled_mlp\nregister(FFN, 'scaled', scaled_mlp.ScaledMLP, scaled_mlp.OPTIONS)\n"))
    run = lambda *a: subprocess.run([sys.executable, 'train.py', *a], cwd=repo, capture_output=True, text=True, timeout=600)
    p = run('--help')
    assert "scaled MLP (ffn='scaled')" in p.stdout and '--mlp_scale=1.0' in p.stdout
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2)
    p = run(cfg_path, "--ffn='scaled'", '--mlp_scale=-1.0')
    assert p.returncode == 1 and p.stderr.strip() == 'error: --mlp_scale must be > 0, got -1.0'
    out = {}
    for scale in (1.0, 0.5):
        d = tmp_path / f'run{scale}'
        p = run(cfg_path, "--ffn='scaled'", f'--mlp_scale={scale}', f"--out_dir='{d}'")
        assert p.returncode == 0, p.stderr
        out[scale] = [r['val_loss'] for r in rows(d)]
    d = tmp_path / 'mlp'
    assert run(cfg_path, f"--out_dir='{d}'").returncode == 0
    assert out[1.0] == [r['val_loss'] for r in rows(d)]        # scale 1: GPT-2's MLP exactly
    assert out[0.5] != out[1.0]                                  # the option is read



KIND = '''"""A throw-away memory kind (tests/test_settings.py): Hash whose K heads all read the slot of head 0, each in its
own table segment; and a throw-away report table: the runs per memory kind. Registered from here, no repo file edited."""
import os, runpy, sys
sys.path.insert(0, os.getcwd())           # the repo root (the test runs this from there)
import engram
import report

class FirstHeadHash(engram.EngramMemory):
    def heads(self, keys, oi, order, size=None):
        h = super().heads(keys, oi, order, size)
        return h[..., :1].expand_as(h)

engram.MEMORY['firsthead'] = FirstHeadHash
report.TABLES['runs_per_kind'] = (
    lambda runs: {m: sum(r['memory'] == m for r in runs) for m in sorted({r['memory'] for r in runs})},
    lambda table: ['\\n## Runs per memory kind\\n'] + [f'- {m}: {n}' for m, n in table.items()])
sys.argv = sys.argv[1:]                   # the repo script, then its arguments
runpy.run_path(sys.argv[0], run_name='__main__')
'''

def test_a_new_memory_kind_and_a_new_report_table_are_each_one_registration(tmp_path, gen_data):
    """The memory kind is one registry: a kind registered from outside the repo's files is a choice of --memory in
    --help and in the checks, builds, trains and is read by the report; it is not Hash, and like Hash (hot_tier
    False) it does not bind the data dir's hot tier. A report table registered from outside (report.TABLES) is
    computed into report.json and rendered in report.md."""
    (tmp_path / 'kind.py').write_text(KIND)
    run = lambda *a: subprocess.run([sys.executable, str(tmp_path / 'kind.py'), *a], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "'firsthead'" in run('train.py', '--help').stdout
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2)
    p = run('train.py', cfg_path, "--memory='firsthead'", '--hot_dropout=0.1')
    assert p.returncode == 1 and "act on Nine's hot tier" in p.stderr
    out = {}
    for kind in ('firsthead', 'hash'):
        d = tmp_path / kind
        p = run('train.py', cfg_path, f"--memory='{kind}'", f"--out_dir='{d}'")
        assert p.returncode == 0, p.stderr[-2000:]
        out[kind] = [r['val_loss'] for r in rows(d)]
    assert out['firsthead'] != out['hash']
    p = run('eval_stratified.py', '--runs', str(tmp_path / 'firsthead'), '--report', str(tmp_path / 'rep'))
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.load(open(tmp_path / 'rep' / 'report.json'))
    assert [r['memory'] for r in report['runs']] == ['firsthead'] and report['runs_per_kind'] == {'firsthead': 1}
    assert '## Runs per memory kind\n\n- firsthead: 1' in open(tmp_path / 'rep' / 'report.md').read()
    import engram
    assert engram.has_memory('hash') and not engram.has_memory('none') and engram.has_hot_tier('nine') and not engram.has_hot_tier('hash')


def test_the_forward_pass_names_no_part_or_variant_option():
    """Parts and variants are chosen once, at construction: GPT.forward and GPTConfig's core never name them."""
    import inspect
    core = set(model.GPTConfig.__dataclass_fields__)
    others = {k for g in extensions.MODEL_GROUPS for k in g.options} - core
    src = inspect.getsource(model.GPT.forward)
    assert not [k for k in others if k in src]
