"""The paper's study at its real shapes, caught on a CPU: the paper configs train, checkpoint, resume and
evaluate at full size (12 x 768, 128,832 vocab, 128M tables, micro-batch 1); checkpoints store the tied head
once; the study checks its disk; run dirs say what made them; float16 is refused."""
import glob
import json
import os

import pytest
import torch

import study
import train
from configurator import apply_config
from conftest import ROOT, SHAKESPEARE, prepare, run
from test_train import micro_config, rows


def paper_config(path):
    cfg = train.default_config()
    apply_config(cfg, [path], train.config_keys)
    return cfg

@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'configs', 'study', '*.py'))), ids=os.path.basename)
def test_the_study_glob_matches_paper_scale_configs_only(path, monkeypatch):
    monkeypatch.chdir(ROOT)                 # the configs exec() their base by a relative path
    cfg = paper_config(path)
    assert (cfg['n_layer'], cfg['n_embd'], cfg['block_size'], cfg['data_dir'], cfg['max_iters']) == \
        (12, 768, 1024, 'data/fineweb_edu', 5000)
    assert cfg['batch_size'] * cfg['gradient_accumulation_steps'] == 16

def test_a_checkpoint_stores_the_tied_head_once(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, warmup_iters=1)
    run(['train.py', cfg_path])
    m = torch.load(os.path.join(cfg['out_dir'], 'ckpt.pt'), weights_only=True)['model']
    assert m['lm_head.weight'].untyped_storage().data_ptr() == m['transformer.wte.weight'].untyped_storage().data_ptr()

def test_float16_without_a_grad_scaler_is_refused(tmp_path, gen_data):
    cfg_path, _ = micro_config(tmp_path, gen_data)
    p = run(['train.py', cfg_path, "--dtype='float16'"], check=False)
    assert p.returncode == 1 and 'GradScaler' in p.stderr and 'Traceback' not in p.stderr

def test_run_dirs_record_what_made_them_and_the_study_report_shows_it(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, warmup_iters=1)
    run(['train.py', cfg_path])
    prov = json.load(open(os.path.join(cfg['out_dir'], 'config.json')))['provenance']
    assert prov['torch'] == torch.__version__ and prov['world_size'] == 1 and prov['device'].startswith('cpu')
    assert prov['git_commit'] is None or len(prov['git_commit']) == 40 and isinstance(prov['git_dirty'], bool)
    run(['eval_stratified.py', '--runs', cfg['out_dir'], '--report', str(tmp_path / 'rep')])
    md = open(tmp_path / 'rep' / 'report.md').read()
    assert '## Provenance' in md and torch.__version__ in md

def test_the_study_checks_its_disk_and_finished_runs_keep_their_weights_only(tmp_path, gen_data, monkeypatch):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, warmup_iters=1)
    args = [cfg_path, '--seeds=0', f'--out={tmp_path / "study"}', f'--report={tmp_path / "rep"}']
    monkeypatch.setattr(study, 'free_bytes', lambda path: 1000)
    with pytest.raises(SystemExit, match=r"error: the study's 1 unfinished runs keep about .* GB .* but .* has 0\.0 GB free"):
        study.main(args)
    assert not os.path.exists(tmp_path / 'study')
    p = run(['study.py', *args])
    assert 'disk: 1 runs to train keep about' in p.stdout
    ckpt = torch.load(tmp_path / 'study' / 'micro_s0' / 'ckpt.pt', weights_only=True)
    assert 'optimizer' not in ckpt and ckpt['iter_num'] == 2
    p = run(['train.py', cfg_path, f"--out_dir='{tmp_path / 'study' / 'micro_s0'}'", "--init_from='resume'", '--max_iters=4'], check=False)
    assert p.returncode == 1 and 'holds the weights only' in p.stderr


@pytest.fixture(scope='module')
def paper_vocab_data(tmp_path_factory):
    """Tiny Shakespeare through the paper's DeepSeek-V3 tokenizer (128,815 ids), with the paper's N_hot."""
    return prepare(tmp_path_factory.mktemp('paper') / 'data', SHAKESPEARE, 'deepseek-v3', '--hot_sizes', '100000')

def test_the_paper_config_trains_checkpoints_resumes_and_evaluates_at_full_shapes(tmp_path, paper_vocab_data):
    """configs/nine_100_400k.py at full shapes (GPT-2 small, a 128,832-row head, 128M table parameters: its hot
    tier, cold tier and gate are everything Hash has and more) at micro-batch 1, one window per iter: an eval,
    a step, a checkpoint, a resume to iter 2, and --ckpt eval equal to the train-time eval of the same iter.
    (Hash-500K at full shapes: bench.py's paper_state, LOG.md.)"""
    out = tmp_path / 'nine'
    common = [os.path.join('configs', 'nine_100_400k.py'), f"--data_dir='{paper_vocab_data}'", f"--out_dir='{out}'",
              '--batch_size=1', '--gradient_accumulation_steps=1', '--val_windows=1', '--eval_batch_size=1',
              '--eval_interval=1', '--log_interval=1', '--warmup_iters=1', '--lr_decay_iters=2', "--device='cpu'"]
    p = run(['train.py', *common, '--max_iters=1'])
    assert 'tables 128,000,000' in p.stdout and 'total 313,969,664' in p.stdout
    assert torch.load(out / 'ckpt.pt', weights_only=True)['model']['lm_head.weight'].shape == (128_832, 768)
    run(['train.py', *common, '--max_iters=2', "--init_from='resume'"])
    evals = rows(out)
    assert [r['iter'] for r in evals] == [0, 1, 2] and evals[-1]['val_loss'] < evals[0]['val_loss']
    run(['eval_stratified.py', '--ckpt', str(out / 'ckpt.pt'), '--report', str(tmp_path / 'eval')])
    m = json.load(open(tmp_path / 'eval' / 'report.json'))['metrics']
    assert m['val_loss'] == pytest.approx(evals[-1]['val_loss'], abs=1e-5)
