import glob
import json
import os

import pytest
import torch

from conftest import run
from configurator import ConfigError, apply_config, load_config
from engramlib import optim


def micro_config(tmp_path, gen_data, name='micro.py', **over):
    cfg = dict(data_dir=gen_data, out_dir=str(tmp_path / 'out'), memory='nine', n_layer=3, n_head=2, n_embd=32,
               engram_layers=(1, 2), block_size=32, batch_size=4, gradient_accumulation_steps=2, hot_size=200,
               table_size=257, engram_head_dim=8, max_iters=12, lr_decay_iters=12, warmup_iters=2,
               learning_rate=3e-3, min_lr=3e-4, eval_interval=4, val_windows=16, eval_batch_size=8, log_interval=2,
               device='cpu', dtype='float32', compile=False)
    cfg.update(over)
    path = tmp_path / name
    path.write_text(''.join(f'{k} = {v!r}\n' for k, v in cfg.items()))
    return str(path), cfg

def rows(out_dir, kind='eval'):
    with open(os.path.join(out_dir, 'metrics.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['kind'] == kind]

def weights(out_dir):
    return torch.load(os.path.join(out_dir, 'ckpt.pt'), weights_only=True)['model']


def test_unknown_key_names_the_closest(tmp_path):
    cfg = {'learning_rate': 1e-3, 'batch_size': 4}
    with pytest.raises(ConfigError, match="unknown config key 'learnin_rate'.*Did you mean 'learning_rate'"):
        apply_config(cfg, ['--learnin_rate=0.1'], list(cfg))

@pytest.mark.parametrize('arg, message', [
    ('--batch_size=2.5', "--batch_size expects int"),
    ('--batch_size=True', "--batch_size expects int"),
    ('--compile=1', "--compile expects bool"),
])
def test_override_type_is_checked(arg, message):
    cfg = {'batch_size': 4, 'compile': True, 'memory': 'nine', 'learning_rate': 6e-4}
    with pytest.raises(ConfigError, match=message):
        apply_config(cfg, [arg], list(cfg))

def test_a_str_key_takes_what_was_typed_even_if_it_reads_as_a_number():
    cfg = {'out_dir': 'out/x', 'memory': 'nine'}
    assert apply_config(cfg, ['--out_dir=2024', '--memory=3'], list(cfg)) == {'out_dir': '2024', 'memory': '3'}

def test_overrides_apply_with_types(tmp_path):
    cfg = {'batch_size': 4, 'learning_rate': 6e-4, 'memory': 'nine', 'engram_layers': (2, 4, 6)}
    f = tmp_path / 'c.py'
    f.write_text("memory = 'hash'\nbatch_size = 8\n")
    apply_config(cfg, [str(f), '--learning_rate=1', '--engram_layers=[2,4]', '--memory=none'], list(cfg))
    assert cfg == {'batch_size': 8, 'learning_rate': 1.0, 'memory': 'none', 'engram_layers': (2, 4)}

def test_bad_config_files(tmp_path):
    cfg = {'batch_size': 4}
    with pytest.raises(ConfigError, match='does not exist'):
        apply_config(cfg, [str(tmp_path / 'nope.py')], list(cfg))
    (tmp_path / 's.py').write_text('batch_size = (\n')
    with pytest.raises(ConfigError, match='syntax error at line'):
        apply_config(cfg, [str(tmp_path / 's.py')], list(cfg))
    (tmp_path / 't.py').write_text('batch_sise = 3\n')
    with pytest.raises(ConfigError, match="unknown key 'batch_sise'.*'batch_size'"):
        apply_config(cfg, [str(tmp_path / 't.py')], list(cfg))


def test_a_config_includes_its_base_by_a_path_relative_to_itself_from_any_cwd(tmp_path, monkeypatch):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'base.py').write_text("batch_size = 2\nmemory = 'hash'\n")
    (tmp_path / 'sub' / 'mid.py').write_text("include('../base.py')\nbatch_size = 3\n")
    (tmp_path / 'sub' / 'top.py').write_text("include('mid.py')\nmemory = 'nine'\n")
    monkeypatch.chdir('/')
    assert load_config(str(tmp_path / 'sub' / 'top.py')) == {'batch_size': 3, 'memory': 'nine'}
    (tmp_path / 'loop.py').write_text("include('sub/../loop.py')\n")
    with pytest.raises(ConfigError, match='includes itself'):
        load_config(str(tmp_path / 'loop.py'))
    (tmp_path / 'gone.py').write_text("include('nope.py')\n")
    with pytest.raises(ConfigError, match=r'nope.py does not exist.*included by .*gone.py'):
        load_config(str(tmp_path / 'gone.py'))

def test_a_config_reached_through_a_link_includes_its_base_from_its_real_location(tmp_path):
    """Issue 51: a link to a Nine config, placed beside another base.py, trained Hash under the Nine config's name."""
    (tmp_path / 'real').mkdir()
    (tmp_path / 'real' / 'base.py').write_text("memory = 'nine'\nbatch_size = 2\n")
    (tmp_path / 'real' / 'nine.py').write_text("include('base.py')\nhot_size = 64\n")
    (tmp_path / 'base.py').write_text("memory = 'hash'\nbatch_size = 9\n")           # a decoy beside the link
    os.symlink(tmp_path / 'real' / 'nine.py', tmp_path / 'nine.py')
    assert load_config(str(tmp_path / 'nine.py')) == {'memory': 'nine', 'batch_size': 2, 'hot_size': 64}

def test_every_repo_config_includes_its_base_and_reads_the_same_from_another_cwd(monkeypatch):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = sorted(glob.glob(os.path.join(root, 'configs', '**', '*.py'), recursive=True))
    assert not [p for p in paths if 'exec(' in open(p).read() or 'open(' in open(p).read()]
    here = {p: load_config(p) for p in paths}
    monkeypatch.chdir('/')
    assert {p: load_config(p) for p in paths} == here and all(here.values())


def test_lr_schedule_matches_paper():
    cfg = dict(decay_lr=True, learning_rate=6e-4, min_lr=6e-5, warmup_iters=100, lr_decay_iters=5000)
    assert optim.get_lr(0, cfg) == pytest.approx(6e-4 / 101)
    assert optim.get_lr(100, cfg) == pytest.approx(6e-4)
    assert optim.get_lr(2550, cfg) == pytest.approx((6e-4 + 6e-5) / 2)
    assert optim.get_lr(5000, cfg) == pytest.approx(6e-5)


def test_training_learns_and_logs_stratified_rows(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=24, lr_decay_iters=24, eval_interval=8)
    p = run(['train.py', cfg_path])
    assert 'params: backbone' in p.stdout
    ev = rows(cfg['out_dir'])
    assert [r['iter'] for r in ev] == [0, 8, 16, 24]
    assert ev[-1]['val_loss'] < ev[0]['val_loss'] - 1.0
    for key in ('val_loss_hot', 'val_loss_cold', 'hot_cold_delta', 'alpha_hot', 'alpha_cold', 'alpha_hot_L1',
                'alpha_cold_L2', 'delta_alpha', 'hot_share', 'hot_share_o2', 'hot_share_o3', 'alpha_buckets'):
        assert key in ev[-1]
    r = ev[-1]
    assert r['hot_cold_delta'] == pytest.approx(r['val_loss_hot'] - r['val_loss_cold'])
    assert r['val_loss'] == pytest.approx(r['hot_share'] * r['val_loss_hot'] + (1 - r['hot_share']) * r['val_loss_cold'])
    assert sum(b['count'] for b in r['alpha_buckets']) == r['n_positions'] == 4 * 4 * 32


@pytest.mark.parametrize('over', [dict(ffn='moe', moe_router='balanced'), dict(embedding='mihe', embed_hash='mulxor', embed_buckets=64),
                                  dict(memory='hash', gate_inputs=('is_hot', 'log_freq', 'collision'))])
def test_parts_that_compute_from_the_data_train_after_the_memory_estimate(tmp_path, gen_data, over):
    """The meta-device size estimate builds the parameters only (shapes_only): the parts' data-computed buffers
    (the balanced router's assignment, MIHE rows, the occupancy of gate inputs) once failed there or were left wrong."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2, **over)
    run(['train.py', cfg_path])
    assert [r['iter'] for r in rows(cfg['out_dir'])] == [0, 2]


def test_resume_continues_exactly(tmp_path, gen_data):
    full_cfg, full = micro_config(tmp_path, gen_data, name='full.py', out_dir=str(tmp_path / 'a'))
    run(['train.py', full_cfg])
    part_cfg, part = micro_config(tmp_path, gen_data, name='part.py', out_dir=str(tmp_path / 'b'))
    run(['train.py', part_cfg, '--max_iters=8'])
    run(['train.py', part_cfg, "--init_from='resume'"])
    assert rows(full['out_dir'], 'eval') == rows(part['out_dir'], 'eval')
    assert rows(full['out_dir'], 'train') == rows(part['out_dir'], 'train')
    a, b = weights(full['out_dir']), weights(part['out_dir'])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any('_orig_mod' in k for k in a)


@pytest.mark.parametrize('block', ['prenorm', 'reversible'])   # reversible: gradients from one autograd Function
def test_ddp_two_processes_match_one(tmp_path, gen_data, block):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=6, lr_decay_iters=6, eval_interval=3, block=block)
    run(['train.py', cfg_path, f"--out_dir='{tmp_path / 'one'}'"])
    run(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py', cfg_path,
         f"--out_dir='{tmp_path / 'two'}'"], env={**os.environ, 'OMP_NUM_THREADS': '1'})
    one, two = rows(tmp_path / 'one'), rows(tmp_path / 'two')
    assert [r['iter'] for r in one] == [r['iter'] for r in two] == [0, 3, 6]
    for r1, r2 in zip(one, two):
        assert r1['val_loss'] == pytest.approx(r2['val_loss'], abs=1e-5)
        assert r1['hot_cold_delta'] == pytest.approx(r2['hot_cold_delta'], abs=1e-5)
    t1, t2 = rows(tmp_path / 'one', 'train'), rows(tmp_path / 'two', 'train')
    assert [r['train_loss'] for r in t1] == pytest.approx([r['train_loss'] for r in t2], abs=1e-5)
    a, b = weights(tmp_path / 'one'), weights(tmp_path / 'two')
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize('world', [2, 4])
def test_torchrun_derives_its_micro_steps_from_the_world_size(tmp_path, gen_data, world):
    """The global batch of 8 windows (4 x 2 micro-steps) over 4 processes: micro-batches of 2, the same run."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4, eval_interval=2)
    run(['train.py', cfg_path, f"--out_dir='{tmp_path / 'one'}'"])
    p = run(['-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={world}', 'train.py', cfg_path,
             f"--out_dir='{tmp_path / 'many'}'"], env={**os.environ, 'OMP_NUM_THREADS': '1'})
    if world == 4:
        assert 'micro-batches of 2 windows, 1 per process per iter (the global batch of 8 windows unchanged)' in p.stdout
    one, many = rows(tmp_path / 'one'), rows(tmp_path / 'many')
    assert [r['val_loss'] for r in one] == pytest.approx([r['val_loss'] for r in many], abs=1e-5)
    p = run(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=3', 'train.py', cfg_path,
             f"--out_dir='{tmp_path / 'three'}'"], check=False, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert p.returncode != 0 and 'the global batch of 8 windows (batch_size 4 x gradient_accumulation_steps 2) does not divide over 3 processes' in p.stderr

def test_ddp_resume_on_two_processes_equals_the_uninterrupted_run_and_only_rank_0_writes(tmp_path, gen_data, monkeypatch):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=6, lr_decay_iters=6, eval_interval=3)
    run(['train.py', cfg_path, f"--out_dir='{tmp_path / 'one'}'"])
    ddp = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py', cfg_path, f"--out_dir='{tmp_path / 'two'}'"]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    run(ddp + ['--max_iters=3'], env=env)
    assert sorted(os.listdir(tmp_path / 'two')) == ['.lock', 'ckpt.pt', 'config.json', 'metrics.jsonl', 'summary.json']
    run(ddp + ["--init_from='resume'"], env=env)
    one, two = rows(tmp_path / 'one'), rows(tmp_path / 'two')
    assert [r['iter'] for r in one] == [r['iter'] for r in two] == [0, 3, 6]
    assert [r['val_loss'] for r in one] == pytest.approx([r['val_loss'] for r in two], abs=1e-5)
    a, b = weights(tmp_path / 'one'), weights(tmp_path / 'two')
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_wandb_offline_history_has_grouped_metrics(tmp_path, gen_data):
    from wandb_log import history
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4, wandb_log=True,
                                 wandb_project='test', wandb_run_name='micro')
    run(['train.py', cfg_path], env={**os.environ, 'WANDB_MODE': 'offline', 'WANDB_DIR': str(tmp_path)})
    files = glob.glob(str(tmp_path / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
    assert len(files) == 1
    hist = history(files[0])
    evals = [h for h in hist if 'loss/val' in h]
    assert [h['_step'] for h in evals] == [0, 4]
    assert [h['loss/val'] for h in evals] == pytest.approx([r['val_loss'] for r in rows(cfg['out_dir'])])
    assert 'flip/hot_cold_delta' in evals[-1] and 'alpha/alpha_hot_L1' in evals[-1] and 'alpha_buckets/loss_0.0_0.2' in evals[-1]
    assert any('loss/train' in h and 'perf/tok_per_s' in h for h in hist) and not any('perf/mfu' in h for h in hist)   # no MFU on CPU


def test_resume_keeps_exactly_the_rows_written_before_the_checkpoint():
    # ckpt of iter 8 = after eval 8, before train step 8
    from engramlib.resume import keep_on_resume
    assert keep_on_resume({'kind': 'eval', 'iter': 8}, 8) and not keep_on_resume({'kind': 'eval', 'iter': 10}, 8)
    assert keep_on_resume({'kind': 'train', 'iter': 7}, 8) and not keep_on_resume({'kind': 'train', 'iter': 8}, 8)
