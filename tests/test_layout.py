"""The house's layout (issue 50): the commands and the paper's model at the root, the library in engramlib/, the
extensions in extensions/ (one-way: the core never imports them), the operator tools in tools/, and an import graph
with no circle and no arrow back up. Without the extensions folder, the paper's model still trains and evaluates,
to the same bytes."""
import ast
import filecmp
import glob
import os
import shutil
import subprocess
import sys

from conftest import ROOT
from test_train import micro_config

MODULES = sorted(os.path.relpath(f, ROOT) for d in ('', 'engramlib', 'extensions', 'extensions/mdx', 'tools', 'report')
                 for f in glob.glob(os.path.join(ROOT, d, '*.py')))
COMMANDS = {'train', 'prepare_fineweb', 'eval_stratified', 'sample', 'study', 'bench'}
MODEL = {'model', 'engram', 'layers', 'configurator'}      # the paper's model and the settings it is declared with
ROOT_FILES = COMMANDS | MODEL | {'mdmix', 'factory'}       # the design card's names, MD-mix, the composition root


def name(path):
    return path[:-3].replace('/', '.').removesuffix('.__init__')

def level(m):
    """Lower levels never import higher ones: the core (the paper's model and the library), the extensions,
    the composition root, the report, the commands and the tools."""
    if m in MODEL or m.startswith('engramlib'):
        return 0
    if m == 'mdmix' or m.startswith('extensions'):
        return 1
    return {'factory': 2}.get(m, 3 if m.startswith('report') else 4)

def imports_of(path):
    """Repo modules imported anywhere in path (module level or inside functions)."""
    found = set()
    for n in ast.walk(ast.parse(open(os.path.join(ROOT, path)).read())):
        if isinstance(n, ast.Import):
            found |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            found.add(n.module)
            found |= {f'{n.module}.{a.name}' for a in n.names}
    mods = {name(p) for p in MODULES}
    return {m for m in found if m in mods} - {name(path)}

GRAPH = {name(p): imports_of(p) for p in MODULES}


def test_the_root_holds_the_commands_and_the_model_and_nothing_else():
    root = {name(p) for p in MODULES if '/' not in p}
    assert root == ROOT_FILES and len(root) <= 12, sorted(root ^ ROOT_FILES)


def test_the_import_graph_has_no_circle():
    state = {}
    def visit(m, path):
        state[m] = 'open'
        for n in sorted(GRAPH[m]):
            assert state.get(n) != 'open', f"import circle: {' -> '.join(path + [n])}"
            if n not in state:
                visit(n, path + [n])
        state[m] = 'done'
    for m in GRAPH:
        if m not in state:
            visit(m, [m])


def test_no_arrow_points_back_up():
    """No library or model module imports an extension, the factory, the report, a command or a tool; no extension
    imports the factory or above; nothing imports a command (tools run scripts as scripts), and only a command or a
    tool imports a tool (bench.py its timers)."""
    back = [f"{m} -> {n}" for m, deps in GRAPH.items() for n in deps if level(n) > level(m)
            or level(n) == 4 and not n.startswith('tools') and m != n]
    assert not back, back
    assert {'engramlib.checkpoint', 'engramlib.resume', 'model'} <= set(GRAPH)     # the walk sees the library


def test_a_planted_arrow_back_up_is_caught(tmp_path):
    """The rule can fail: an import of an extension from the library is an arrow back up."""
    GRAPH['engramlib.optim'].add('extensions.variants')
    try:
        assert [m for m, deps in GRAPH.items() for n in deps if level(n) > level(m)] == ['engramlib.optim']
    finally:
        GRAPH['engramlib.optim'].discard('extensions.variants')


def copy_code(dest, without=()):
    """A clone's code (tracked .py files and configs), less the folders in `without`."""
    keep = ('.py', '.json', '.tiktoken')
    shutil.copytree(ROOT, dest, ignore=lambda d, names: [
        n for n in names if n in without or n.startswith('.') or n in ('data', 'out', 'reports', 'docs', 'tests')
        or os.path.isfile(os.path.join(d, n)) and not n.endswith(keep)])


def test_the_paper_model_trains_and_evaluates_to_the_same_bytes_without_the_extensions(tmp_path, gen_data):
    """extensions/ removed: train.py (Nine and Hash), its --help and eval_stratified.py work, and each run's
    metrics.jsonl is byte-identical to the full repo's. With the folder, mdmix's hash is an --engram_hash choice;
    without it, a checkpoint that names an extension's setting is refused in one line."""
    bare = tmp_path / 'bare'
    copy_code(bare, without=('extensions',))
    assert not (bare / 'extensions').exists() and (bare / 'engramlib' / 'data.py').exists()
    run = lambda repo, *a: subprocess.run([sys.executable, *a], cwd=repo, capture_output=True, text=True, timeout=600)
    cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4, eval_interval=2)
    for memory in ('nine', 'hash'):
        runs = {}
        for label, repo in (('full', ROOT), ('bare', bare)):
            runs[label] = tmp_path / f'{memory}_{label}'
            p = run(repo, 'train.py', cfg_path, f"--memory='{memory}'", f"--out_dir='{runs[label]}'")
            assert p.returncode == 0, p.stderr[-2000:]
        assert filecmp.cmp(runs['full'] / 'metrics.jsonl', runs['bare'] / 'metrics.jsonl', shallow=False)
    help_bare = run(bare, 'train.py', '--help').stdout
    assert '--memory=' in help_bare and '--noise_emb' not in help_bare and '--adapter' not in help_bare
    p = run(bare, 'eval_stratified.py', '--runs', str(tmp_path / 'nine_bare'), '--report', str(tmp_path / 'rep'))
    assert p.returncode == 0 and (tmp_path / 'rep' / 'report.md').exists(), p.stderr[-2000:]
    p = run(bare, 'sample.py', '--ckpt', str(tmp_path / 'nine_full' / 'ckpt.pt'), '--max_new_tokens', '4')
    assert p.returncode == 1 and p.stderr.startswith('error: ') and 'with the extensions/ folder' in p.stderr, p.stderr


def test_the_paper_model_reaches_only_its_own_files_and_two_library_modules():
    """An import walk from model.py, engram.py and layers.py: the settings' declarations and the chunked loss, nothing
    else of the library, no extension (the extensions register into the core, never the other way)."""
    reached, todo = set(MODEL), list(MODEL)
    while todo:
        for m in GRAPH[todo.pop()] - reached:
            reached.add(m)
            todo.append(m)
    assert reached == MODEL | {'engramlib.options', 'engramlib.linear_ce'}, sorted(reached)


def test_every_function_fits_on_a_screen():
    """No function over 60 lines (commands, library, extensions, tools, report): a longer one does several things."""
    long = []
    for p in MODULES:
        for n in ast.walk(ast.parse(open(os.path.join(ROOT, p)).read())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                long.append(f"{p}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)")
    assert not long, long
