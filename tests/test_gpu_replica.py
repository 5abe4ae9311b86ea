"""The GPU replica (issue 35): its configs hold the regime regime.json measured, and gpu_study.sh runs every step
(prepare, pack, unpack with the counts rebuilt byte for byte, smoke, runs by priority, report, archive) at tiny
shapes on a CPU with the packages a bare GPU image lacks blocked."""
import glob
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT, SHAKESPEARE
from test_gpu_check import BLOCKER
from configurator import load_config
from test_replica import PAPER_LAYERS, table_params

CONFIGS = {os.path.basename(p)[:-3]: p for p in sorted(glob.glob(os.path.join(ROOT, 'configs', 'gpu_replica', '*.py')))}

def test_gpu_replica_configs_match_the_regime_they_were_measured_on():
    """regime.json is what `gpu_study.sh --prepare` measured on the corpus; the configs hold the paper's matched
    quantities against it: epochs 0.86 of >= 15M tokens, ~59% hot coverage of train, warmup 2% / cosine to lr/10 /
    evals every 5%, the 20% hot share, exact iso-parameter tables, the paper's relative Engram depths."""
    with open(os.path.join(ROOT, 'configs', 'gpu_replica', 'regime.json')) as f:
        regime = json.load(f)
    cfgs = {n: load_config(p) for n, p in CONFIGS.items()}
    assert set(cfgs) >= {'hash_500k', 'nine_100_400k', 'nine_20_480k', 'nine_50_450k', 'hash_300k', 'hash_800k'}
    main = cfgs['nine_100_400k']
    n_train = regime['data']['train_tokens']
    for name, c in cfgs.items():
        it, tokens = c['max_iters'], c['max_iters'] * c['batch_size'] * c['gradient_accumulation_steps'] * c['block_size']
        assert tokens == regime['tokens_trained'] >= 15_000_000, name
        assert tokens / n_train == pytest.approx(0.86, abs=0.01), name                     # the paper's 0.86 epoch
        assert c['warmup_iters'] == round(0.02 * it) and c['lr_decay_iters'] == it, name
        assert c['eval_interval'] == round(0.05 * it) and c['min_lr'] == pytest.approx(c['learning_rate'] / 10), name
        assert [l / c['n_layer'] for l in c['engram_layers']] == [l / 12 for l in PAPER_LAYERS], name
        assert (c['n_layer'], c['n_embd'], c['val_windows']) == (main['n_layer'], main['n_embd'], 400), name
        assert c['out_dir'].endswith(name) and c['data_dir'] == 'data/gpu_replica', name
    assert regime['hot_coverage']['train'][str(main['hot_size'])]['any'] == pytest.approx(0.59, abs=0.015)
    assert regime['non_embedding_params_per_train_token'] == pytest.approx(0.89, abs=0.05)
    budget = {n: table_params(c) for n, c in cfgs.items()}
    assert all(b == budget['hash_500k'] for n, b in budget.items() if n not in ('hash_300k', 'hash_800k'))
    assert (budget['hash_300k'], budget['hash_800k']) == (0.6 * budget['hash_500k'], 1.6 * budget['hash_500k'])
    assert main['hot_size'] / cfgs['hash_500k']['table_size'] == pytest.approx(0.2)
    assert cfgs['nine_20_480k']['hot_size'] / main['hot_size'] == pytest.approx(0.2)
    assert cfgs['nine_50_450k']['hot_size'] / main['hot_size'] == pytest.approx(0.5)

def test_run_order_puts_the_main_pairs_seeds_first():
    from tools import gpu_study
    order = gpu_study.run_order()
    assert order[:6] == [('hash_500k', 0), ('nine_100_400k', 0), ('hash_500k', 1), ('nine_100_400k', 1),
                         ('hash_500k', 2), ('nine_100_400k', 2)]
    assert len(order) == len(set(order)) and {c for c, _ in order} == set(CONFIGS)

@pytest.fixture(scope='module')
def tiny_pack(tmp_path_factory):
    """`gpu_study.sh --prepare` on a small corpus of Tiny Shakespeare's scenes (one document each)."""
    d = tmp_path_factory.mktemp('gpu_replica')
    text = open(SHAKESPEARE).read()
    scenes = [s for s in text.split('\n\n') if s.strip()]
    src = d / 'scenes.jsonl'
    src.write_text(''.join(json.dumps({'text': '\n\n'.join(scenes[i:i + 20])}) + '\n' for i in range(0, len(scenes), 20)))
    p = subprocess.run(['bash', 'gpu_study.sh', '--prepare', '--source', str(src), '--vocab_size', '2048', '--data',
                        str(d / 'data'), str(d / 'pack')], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, 'PYTHON': sys.executable})
    assert p.returncode == 0, p.stderr[-3000:]
    return d

def test_the_pack_leaves_out_the_counts_and_fits_a_gpu_call(tiny_pack):
    from tools import gpu_study
    pack = tiny_pack / 'pack' / gpu_study.PACK_NAME
    assert pack.stat().st_size <= 50 * 2**20
    names = tarfile.open(pack).getnames()
    assert 'meta.json' in names and 'train.bin' in names and 'data_side.json' in names and 'regime.json' in names
    assert not set(gpu_study.COUNTS) & set(names)

def test_the_dry_run_passes_without_datasets_wandb_or_bbhash_and_rebuilds_the_counts_byte_for_byte(tiny_pack, tmp_path):
    from tools import gpu_study
    block = tmp_path / 'block'
    block.mkdir()
    (block / 'sitecustomize.py').write_text(BLOCKER)
    data, out = tmp_path / 'unpacked', tmp_path / 'out'
    p = subprocess.run(['bash', 'gpu_study.sh', '--dry', '--data', str(data), str(tiny_pack / 'pack'), str(out)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, 'PYTHON': sys.executable, 'PYTHONPATH': str(block)})
    res = json.loads((out / 'gpu_study.json').read_text())
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:], json.dumps(res['steps'], indent=1)[-3000:])
    assert [s['status'] for s in res['steps'].values()] == ['pass'] * 4
    for f in gpu_study.COUNTS:           # rebuilt on unpacking, equal to what prepare counted
        assert (data / f).read_bytes() == (tiny_pack / 'data' / f).read_bytes(), f
    runs = res['runs']
    assert sorted(runs, key=lambda n: runs[n]['nth_started'])[:6] == [f'{c}_s{s}' for c, s in gpu_study.run_order()[:6]]
    assert all(r['status'] == 'finished' for r in runs.values())
    rep = json.loads((out / 'report' / 'report.json').read_text())
    assert rep['flip_summary']['hash_500k']['seeds'] == 3 and rep['flip_summary']['nine_100_400k']['seeds'] == 3
    assert {x['pattern'][:2] for x in rep['patterns']} >= {'1.', '4.'}
    assert rep['data_side']['kn_by_size'][0]['rows'][0]['draws'] == 10          # from the pack's cache: random documents
    md = (out / 'report' / 'report.md').read_text()
    assert '## Table 4 across seeds' in md and "## The paper's patterns, tested" in md
    names = tarfile.open(out / 'gpu_study.tar.gz').getnames()
    assert 'report/report.md' in names and 'runs/nine_100_400k_s0/metrics.jsonl' in names and 'gpu_study.json' in names

def test_the_scheduler_starts_no_run_that_cannot_finish_before_the_deadline(tmp_path):
    """From the smoke gate's rate, every run of the plan is expected to take minutes: with one minute left, none
    starts, and each is listed as not started (a run killed at the deadline would be lost work)."""
    import time
    from tools import gpu_study
    st = gpu_study.Study(str(tmp_path / 'pack'), str(tmp_path / 'data'), str(tmp_path / 'out'), dry=False)
    os.makedirs(tmp_path / 'out' / 'logs')
    smoke = {'wall_s': 15.0, 'tok_per_s_median': 250_000.0, 'eval_s': 0.5}
    st.result['steps']['smoke'] = {'status': 'pass', 'seconds': 16.0, 'figures': {'hash_500k': smoke, 'nine_100_400k': smoke}}
    assert st.estimate_s('hash_500k') > 60
    st.deadline = time.time() + 60
    assert st.train_all() == {'finished': 0, 'not_started': len(gpu_study.run_order())}
    assert os.listdir(tmp_path / 'out' / 'logs') == [] and len(st.result['not_started']) == len(gpu_study.run_order())

V2 = {os.path.basename(p)[:-3]: p for p in sorted(glob.glob(os.path.join(ROOT, 'configs', 'gpu_replica_v2', '*.py')))}

def test_v2_configs_are_the_first_replicas_roles_iso_parameter_at_the_maps_hot_coverages():
    """GPU replica v2 (issue 48): the same 8 configs in the regime the data-side map chose (docs/datamap.md)."""
    assert set(V2) == set(CONFIGS)
    cfgs = {n: load_config(p) for n, p in V2.items()}
    tables = {n: 2 * 2 * c['table_size'] * c['engram_head_dim'] + (2 * c['hot_size'] * 2 * c['engram_head_dim']
              if c['memory'] == 'nine' else 0) for n, c in cfgs.items()}
    main = tables['hash_500k']
    assert all(t == main for n, t in tables.items() if n not in ('hash_300k', 'hash_800k'))
    assert (tables['hash_300k'], tables['hash_800k']) == (0.6 * main, 1.6 * main)
    assert [cfgs[n]['hot_size'] for n in ('nine_20_480k', 'nine_50_450k', 'nine_100_400k')] == [1_307, 3_307, 5_658]
    for n, c in cfgs.items():
        it = c['max_iters']
        assert c['warmup_iters'] == round(0.02 * it) and c['eval_interval'] == round(0.05 * it), n
        assert c['data_dir'] == 'data/gpu_replica_v2' and c['out_dir'].endswith(n), n
    assert round(it * cfgs['hash_500k']['batch_size'] * cfgs['hash_500k']['block_size'] / 282_942) == 20   # 20 epochs

def test_v2_prepares_from_the_shipped_text_and_its_dry_run_passes_without_datasets_wandb_or_bbhash(tmp_path):
    from tools import gpu_study
    env = {**os.environ, 'PYTHON': sys.executable}
    p = subprocess.run(['bash', 'gpu_study.sh', '--prepare', '--configs', 'configs/gpu_replica_v2', '--data', str(tmp_path / 'data'),
                        '--vocab_size', '32768', '--source', SHAKESPEARE, str(tmp_path / 'pack')], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / 'pack' / gpu_study.PACK_NAME).stat().st_size <= 50 * 2**20
    regime = json.loads((tmp_path / 'data' / 'regime.json').read_text())
    assert {n: round(c['any'], 3) for n, c in regime['hot_coverage']['train'].items()} == {'1307': 0.436, '3307': 0.534, '5658': 0.594}
    block = tmp_path / 'block'
    block.mkdir()
    (block / 'sitecustomize.py').write_text(BLOCKER)
    p = subprocess.run(['bash', 'gpu_study.sh', '--dry', '--configs', 'configs/gpu_replica_v2', '--data', str(tmp_path / 'unpacked'),
                        str(tmp_path / 'pack'), str(tmp_path / 'out')], cwd=ROOT, capture_output=True, text=True,
                       env={**env, 'PYTHONPATH': str(block)})
    res = json.loads((tmp_path / 'out' / 'gpu_study.json').read_text())
    assert p.returncode == 0 and [s['status'] for s in res['steps'].values()] == ['pass'] * 4, p.stderr[-2000:]


def test_the_operator_tools_fail_in_one_line_and_leave_nothing_behind(tmp_path):
    """Issue 51, class 4: a child script's failure, a source that is a directory, and a crafted pack (a member
    that would land outside the data dir) each end in one `error:` line and a non-zero exit, not a traceback around
    the child's own line; nothing is written into the directory, nothing escapes, no temp dir is left."""
    def tool(*args):
        p = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert p.returncode != 0 and 'Traceback' not in p.stderr, p.stderr[-2000:]
        return p.stderr.strip().splitlines()
    bad = tmp_path / 'bad.jsonl'
    bad.write_bytes(b'{"text": "\xff\xfe not utf-8"}\n')
    lines = tool('tools.gpu_study', '--prepare', '--source', str(bad), '--data', str(tmp_path / 'd'), str(tmp_path / 'p'))
    assert lines[-1].startswith('error: ') and 'replica_corpus' in lines[-1] and 'UTF-8' in lines[-1], lines
    corpora = tmp_path / 'corpora'
    corpora.mkdir()
    lines = tool('tools.gpu_check', '--prepare', '--source', str(corpora))
    assert lines == [f"error: --source {corpora} is not a corpus file; pass .jsonl/.txt files (either .xz), then DATA_DIR"]
    assert os.listdir(corpora) == []
    pack, data = tmp_path / 'pack', tmp_path / 'data'
    pack.mkdir()
    with tarfile.open(pack / 'gpu_replica.tar.xz', 'w:xz') as tar:
        for name, text in (('meta.json', b'{"files": {}}'), ('../escaped.txt', b'out')):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    lines = tool('tools.gpu_study', '--dry', '--data', str(data), str(pack), str(tmp_path / 'out'))
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'escaped.txt' in lines[0], lines
    assert not (tmp_path / 'escaped.txt').exists() and not data.exists() and not glob.glob(f'{data}.*.tmp')
