"""The file system and signals as adversaries: no write through a planted link, finished work never
destroyed, clean stops on SIGTERM / SIGUSR1 / Ctrl-C, and one `error: ...` line for every bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import train
from engramlib.checkpoint import CKPT_VERSION, save_checkpoint
from conftest import ROOT, SHAKESPEARE, prepare, run
from engramlib.data import DataError
from engramlib.fsafe import DirLock
from test_train import micro_config, rows

VICTIM = b'precious bytes of another file\n'

def plant(path, victim):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(victim, path)

def no_traceback_error(p):
    assert p.returncode != 0 and 'Traceback' not in p.stderr, p.stderr[-1500:]
    assert any(l.startswith('error:') or ': error: ' in l for l in p.stderr.splitlines()), p.stderr[-800:]


# -- links ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['.lock', 'metrics.jsonl', 'config.json', 'best.pt', 'ckpt.pt', 'summary.json'])
def test_train_never_writes_through_a_link_planted_in_its_run_dir(tmp_path, gen_data, name):
    victim = tmp_path / 'victim'
    victim.write_bytes(VICTIM)
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4, save_best=True)
    plant(os.path.join(cfg['out_dir'], name), str(victim))
    p = run(['train.py', cfg_path], check=False)
    assert victim.read_bytes() == VICTIM
    if p.returncode:                    # refused: the link is named, no traceback
        no_traceback_error(p)
        assert name in p.stderr
    else:
        assert not os.path.islink(os.path.join(cfg['out_dir'], name))

@pytest.mark.parametrize('names', [['.lock'], ['.write_probe', '.stream.bin.tmp', 'train.bin', 'canonical.npy',
                                               'hot/n50/o2.mphf.tmp', 'hot/n50/o2_keys.npy', '.count_parts_ngrams_x']])
def test_prepare_never_writes_through_a_link_planted_in_its_out_dir(tmp_path, corpus, names):
    victim = tmp_path / 'victim'
    victim.write_bytes(VICTIM)
    out = tmp_path / 'data'
    for n in names:
        plant(str(out / n), str(victim))
    p = run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', corpus['tokenizer'], '--out', str(out),
             '--num_proc', '1', '--hot_sizes', '50'], check=False)
    assert victim.read_bytes() == VICTIM
    if p.returncode:
        no_traceback_error(p)
    else:                               # what prepare writes replaced the links (names it never writes may stay)
        assert not [n for n in ('train.bin', 'canonical.npy', 'hot/n50/o2_keys.npy') if os.path.islink(out / n)]


# -- finished work ----------------------------------------------------------------------------------------

def snapshot(d):
    return {os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), 'rb').read()
            for r, _, fs in os.walk(d) for f in fs if f != '.lock'}

def test_overwrite_checks_everything_first_and_replaces_the_data_dir_only_when_complete(tmp_path, corpus):
    out = prepare(tmp_path / 'data', corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50')
    before = snapshot(out)
    p = run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', str(tmp_path / 'typo.json'), '--out', out,
             '--num_proc', '1', '--val_frac', '0.2', '--overwrite'], check=False)
    no_traceback_error(p)
    assert snapshot(out) == before
    p = run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', corpus['tokenizer'], '--out', out,
             '--num_proc', '1', '--val_frac', '0.2', '--hot_sizes', '50', '--overwrite'])
    assert json.load(open(os.path.join(out, 'meta.json')))['tokens']['args']['val_frac'] == 0.2
    assert os.listdir(tmp_path) == ['data']             # no build or old dir left beside it

def test_a_second_prepare_into_a_locked_out_dir_is_refused(tmp_path, corpus):
    out = tmp_path / 'data'
    lock = DirLock(str(out))                       # another prepare (or anything) is writing there
    p = run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', corpus['tokenizer'], '--out', str(out),
             '--num_proc', '1'], check=False)
    lock.release()
    no_traceback_error(p)
    assert 'is in use by another run (pid' in p.stderr and os.listdir(out) == ['.lock']

def test_a_finished_run_is_never_replaced_or_rewritten_unless_asked(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4)
    run(['train.py', cfg_path])
    out = cfg['out_dir']
    before = snapshot(out)
    p = run(['train.py', cfg_path], check=False)                          # a fresh run into it: refused
    no_traceback_error(p)
    assert 'holds a run' in p.stderr and '--overwrite=True' in p.stderr and snapshot(out) == before
    p = run(['train.py', cfg_path, "--init_from='resume'"])               # resuming a finished run: a no-op
    assert 'is finished' in p.stdout and snapshot(out) == before
    run(['train.py', cfg_path, "--init_from='resume'", '--max_iters=8'])  # resumed further: finished again at 8
    assert json.load(open(os.path.join(out, 'summary.json')))['final']['iter'] == 8
    run(['train.py', cfg_path, '--overwrite=True'])                       # asked: replaced
    assert rows(out)[-1]['iter'] == 4 and json.load(open(os.path.join(out, 'summary.json')))['final']['iter'] == 4

def test_temp_files_of_killed_writes_are_removed_at_the_next_start(tmp_path, gen_data, corpus):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4)
    os.makedirs(os.path.join(cfg['out_dir'], 'snapshots'))
    for rel in ('.ckpt.pt.k1l2m3.tmp', 'snapshots/.iter_000004.pt.x.tmp'):
        open(os.path.join(cfg['out_dir'], rel), 'wb').write(b'x' * 1000)
    run(['train.py', cfg_path])
    assert not [f for r, _, fs in os.walk(cfg['out_dir']) for f in fs if f.endswith('.tmp')]
    out = prepare(tmp_path / 'data', corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50')
    open(os.path.join(out, '.meta.json.abc.tmp'), 'w').write('half')
    os.makedirs(os.path.join(out, 'hot', 'n50', '.work.q.tmp'))
    prepare(out, corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50')
    assert not [f for r, ds, fs in os.walk(out) for f in fs + ds if f.endswith('.tmp')]


# -- stops ------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, gen_data):
    d = tmp_path_factory.mktemp('whole')
    cfg_path, cfg = micro_config(d, gen_data, max_iters=40, lr_decay_iters=40, ckpt_interval=1000, eval_interval=8)
    run(['train.py', cfg_path])
    return rows(cfg['out_dir'])

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_a_stop_signal_saves_a_checkpoint_and_the_resumed_run_equals_the_uninterrupted_one(tmp_path, gen_data, uninterrupted, sig):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=40, lr_decay_iters=40, ckpt_interval=1000, eval_interval=8)
    p = subprocess.Popen([sys.executable, 'train.py', cfg_path], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(cfg['out_dir'], 'metrics.jsonl')
    t0 = time.time()
    while not (os.path.exists(log) and '"iter": 6' in open(log).read()) and time.time() - t0 < 120:
        time.sleep(0.01)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig and 'Traceback' not in err, err[-1500:]
    assert f'stopped by {signal.Signals(sig).name} at iter' in err
    stopped_at = torch.load(os.path.join(cfg['out_dir'], 'ckpt.pt'), weights_only=True)['iter_num']
    assert 6 < stopped_at < 40 and not os.path.exists(os.path.join(cfg['out_dir'], 'summary.json'))
    run(['train.py', cfg_path, "--init_from='resume'"])
    assert rows(cfg['out_dir']) == uninterrupted

def test_a_failed_background_write_is_one_error_naming_the_file_and_the_previous_checkpoint_stays(tmp_path, gen_data, monkeypatch):
    from engramlib import checkpoint
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=12, lr_decay_iters=12, ckpt_interval=4)
    real, calls = torch.save, []
    def full_disk(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError('[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/3: file write failed')
        return real(obj, f, *a, **k)
    monkeypatch.setattr(checkpoint.torch, 'save', full_disk)
    with pytest.raises(DataError, match=r"writing .*ckpt\.pt failed \(RuntimeError: .*\); the previous ckpt\.pt is untouched"):
        train.main([cfg_path])
    assert torch.load(os.path.join(cfg['out_dir'], 'ckpt.pt'), weights_only=True)['iter_num'] == 4
    assert not os.path.exists(os.path.join(cfg['out_dir'], 'summary.json'))


# -- one error path ---------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def broken(tmp_path_factory, gen_data, corpus):
    """Things a user can get wrong: a trained run, a crafted checkpoint, a run dir with an empty config,
    a data dir with an edited vocabulary, a whitespace-only source."""
    d = tmp_path_factory.mktemp('broken')
    cfg_path, cfg = micro_config(d, gen_data, max_iters=2, lr_decay_iters=2, warmup_iters=1)
    run(['train.py', cfg_path])
    crafted = str(d / 'crafted.pt')
    save_checkpoint(crafted, {'format_version': CKPT_VERSION, 'model_args': {'n_layer': 2, 'evil': 1}, 'model': {}})
    empty = d / 'runs' / 'empty_s0'
    shutil.copytree(cfg['out_dir'], empty)
    (empty / 'config.json').write_text('{}')
    edited = d / 'edited'
    shutil.copytree(gen_data, edited)
    meta = json.load(open(edited / 'meta.json'))
    meta['tokens']['vocab_size'] += 1000
    (edited / 'meta.json').write_text(json.dumps(meta))
    (d / 'blank.txt').write_text('   \n\n  \t \n')
    (d / 'bad_cfg.py').write_text(open(cfg_path).read() + f"data_dir = {str(edited)!r}\nout_dir = {str(d / 'o2')!r}\n")
    return {'d': str(d), 'cfg': cfg_path, 'ckpt': os.path.join(cfg['out_dir'], 'ckpt.pt'), 'crafted': crafted,
            'empty': str(empty), 'bad_cfg': str(d / 'bad_cfg.py'), 'blank': str(d / 'blank.txt'), 'tok': corpus['tokenizer'],
            'txt': corpus['txt']}

BAD_INPUTS = [
    ('prepare_fineweb.py', ['--hot_sizes', '5k'], 'must be comma-separated integers'),
    ('prepare_fineweb.py', ['--orders', '2,x'], 'must be comma-separated integers'),
    ('prepare_fineweb.py', ['--orders', '2,2,3'], 'must not repeat a value'),
    ('prepare_fineweb.py', ['--source', '{blank}', '--tokenizer', '{tok}', '--out', '{d}/blank_data', '--num_proc', '1'],
     'with any text'),
    ('prepare_fineweb.py', ['--source', '{txt}', '--tokenizer', '{tok}', '--out', '{cfg}', '--num_proc', '1'], 'is a file'),
    ('study.py', ['{cfg}', '--seeds=a,b'], '--seeds must be comma-separated integers'),
    ('sample.py', ['--ckpt', '{ckpt}', '--start', 'FILE:{d}/missing.txt'], 'cannot read the prompt file'),
    ('sample.py', ['--ckpt', '{d}'], 'is a directory, not a checkpoint'),
    ('sample.py', ['--ckpt', '{crafted}'], 'model settings this code does not know (evil)'),
    ('eval_stratified.py', ['--ckpt', '{ckpt}', '--val_windows', '-5'], '--val_windows and --hot_size must be >= 1'),
    ('eval_stratified.py', ['--runs', '{empty}'], 'config.json lacks'),
    ('train.py', ['{bad_cfg}'], 'canonical map covers'),
    ('train.py', ['{cfg}', '--overwrite=True', '--block_size=3000000000'], 'needs at least'),
    ('train.py', ['{cfg}', '--overwrite=True', '--n_embd=65536'], 'GiB of host memory'),
]

@pytest.mark.parametrize('script, args, message', BAD_INPUTS, ids=[f'{s}:{" ".join(a)[:40]}' for s, a, _ in BAD_INPUTS])
def test_every_script_answers_a_bad_input_with_one_error_line(broken, script, args, message):
    p = run([script, *(a.format(**broken) for a in args)], check=False)
    no_traceback_error(p)
    assert message in p.stderr, p.stderr[-800:]

def test_without_the_environment_every_script_says_to_source_setup(broken):
    for script in ('train.py', 'prepare_fineweb.py', 'eval_stratified.py', 'sample.py', 'bench.py'):
        p = subprocess.run([sys.executable, '-S', script, broken['cfg']], cwd=ROOT, capture_output=True, text=True)
        no_traceback_error(p)
        assert 'source setup.sh' in p.stderr

@pytest.mark.skipif(torch.cuda.is_available(), reason='the machine has CUDA')
def test_asking_for_cuda_without_one_is_one_error_line(broken):
    for script, args in (('sample.py', ['--ckpt', broken['ckpt']]), ('eval_stratified.py', ['--ckpt', broken['ckpt']])):
        p = run([script, *args, '--device', 'cuda'], check=False)
        no_traceback_error(p)
        assert 'no CUDA device' in p.stderr

def test_a_diverged_run_is_skipped_with_its_reason_and_the_report_stays_valid_json(tmp_path, broken):
    runs = tmp_path / 'runs'
    good = runs / 'micro_s0'
    shutil.copytree(os.path.dirname(broken['ckpt']), good)
    bad = runs / 'micro_s1'
    shutil.copytree(good, bad)
    lines = (bad / 'metrics.jsonl').read_text().splitlines()
    last = json.loads(lines[-1])
    last.update(val_loss=float('nan'), hot_cold_delta=float('nan'))
    (bad / 'metrics.jsonl').write_text('\n'.join(lines[:-1] + [json.dumps(last)]) + '\n')
    cfg = json.load(open(bad / 'config.json'))
    (bad / 'config.json').write_text(json.dumps({**cfg, 'seed': 1}))
    run(['eval_stratified.py', '--runs', str(runs / '*'), '--report', str(tmp_path / 'rep')])
    text = (tmp_path / 'rep' / 'report.json').read_text()
    rep = json.loads(text, parse_constant=lambda c: pytest.fail(f'report.json holds {c}'))
    assert 'non-finite' in rep['skipped'][str(bad)] and [r['seed'] for r in rep['runs']] == [0]


# -- cleanup that stays in its own dir (issue 36) -----------------------------------------------------------------

@pytest.mark.parametrize('where', ['/', 'home', 'repo', 'data dir', 'inside the data dir'])
def test_a_run_refuses_an_out_dir_it_does_not_own_before_touching_anything(tmp_path, gen_data, where):
    """/, the home dir, the repo root, a data dir or a dir inside one: one error line, nothing cleared or written
    (274c17e ran "removed the temp files of writes killed in /" over every .*.tmp below /)."""
    home = tmp_path / 'home'
    home.mkdir()
    out = {'/': '/', 'home': str(home), 'repo': ROOT, 'data dir': gen_data, 'inside the data dir': os.path.join(gen_data, 'runs')}[where]
    cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    bait = home / '.ckpt.pt.abc123.tmp'                        # a temp of a killed write, in the home dir
    bait.write_text('x')
    p = run(['train.py', cfg_path, f"--out_dir='{out}'"], check=False, env={**os.environ, 'HOME': str(home)})
    assert p.returncode == 1 and p.stderr.strip().startswith('error: --out_dir') and 'Traceback' not in p.stderr, p.stderr
    assert bait.exists() and not os.path.exists(os.path.join(gen_data, 'runs')) and not os.path.exists(os.path.join(gen_data, 'config.json'))
    if where in ('/', 'home', 'repo'):
        p = run(['prepare_fineweb.py', '--source', SHAKESPEARE, '--tokenizer', 'gpt2', '--out', out], check=False,
                env={**os.environ, 'HOME': str(home)})
        assert p.returncode == 1 and p.stderr.strip().startswith('error: --out') and bait.exists(), p.stderr

def test_temp_cleanup_spares_a_live_run_below_and_the_data_dirs_of_a_sibling_name(tmp_path, gen_data, corpus):
    """A run whose out_dir is the parent of a live run leaves the live run's in-flight temp alone (its dir has its own
    lock), and temps deeper than the dirs a run writes into; a prepare on `x` leaves `x.v2`'s build and swapped-out
    copy alone (274c17e's glob `.x.*.tmp` matched `.x.v2.*`)."""
    from engramlib.fsafe import DirLock
    parent = tmp_path / 'parent'
    live = parent / 'live'
    live.mkdir(parents=True)
    lock = DirLock(str(live))
    try:
        inflight = live / '.ckpt.pt.k1l2m3.tmp'
        inflight.write_text('being written')
        deep = parent / 'a' / 'b'
        deep.mkdir(parents=True)
        (deep / '.x.abc.tmp').write_text('not ours to judge')
        cfg_path, _ = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2)
        run(['train.py', cfg_path, f"--out_dir='{parent}'"])
        assert inflight.exists() and (deep / '.x.abc.tmp').exists()
    finally:
        lock.release()
    d = tmp_path / 'd'
    d.mkdir()
    sibling = [d / '.x.v2.build.abc123.tmp', d / '.x.v2.old.def456.tmp']
    for s in sibling:
        (s / 'data').mkdir(parents=True)
    own = d / '.x.build.zzz999.tmp'
    own.mkdir()
    prepare(d / 'x', corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50')
    assert all(s.exists() for s in sibling) and not own.exists()


# -- links at directories (issue 36) ------------------------------------------------------------------------------

def test_own_subdir_refuses_a_link_at_a_dir_it_writes_into_and_follows_the_users_link_above(tmp_path):
    from engramlib.fsafe import UnsafePath, own_subdir
    victim = tmp_path / 'victim'
    victim.mkdir()
    disk = tmp_path / 'bigdisk'
    disk.mkdir()
    (tmp_path / 'out').symlink_to(disk)                        # the user's own link above: followed
    assert os.path.realpath(own_subdir(str(tmp_path / 'out'), 'run', 'snapshots')) == str(disk / 'run' / 'snapshots')
    (disk / 'run2').symlink_to(victim)                         # planted at the first level
    (disk / 'run3').mkdir()
    (disk / 'run3' / 'snapshots').symlink_to(victim)           # or at the second
    for run_name in ('run2', 'run3'):
        with pytest.raises(UnsafePath, match='symbolic link'):
            own_subdir(str(tmp_path / 'out'), run_name, 'snapshots')
        assert os.listdir(victim) == []

def test_reports_and_hot_tiers_refuse_a_directory_link_planted_where_they_write(tmp_path, corpus, gen_data):
    """A link planted at a run's eval/ (the --ckpt report's default dir) or at a data dir's hot/: one error line and
    the link's target untouched (274c17e wrote report.md and the hot tier's keys into the target)."""
    victim = tmp_path / 'victim'
    victim.mkdir()
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2)
    run(['train.py', cfg_path])
    os.symlink(victim, os.path.join(cfg['out_dir'], 'eval'))
    p = run(['eval_stratified.py', '--ckpt', os.path.join(cfg['out_dir'], 'ckpt.pt')], check=False)
    assert p.returncode == 1 and p.stderr.startswith('error:') and 'symbolic link' in p.stderr and os.listdir(victim) == []
    out = tmp_path / 'data'
    out.mkdir()
    os.symlink(victim, out / 'hot')
    with pytest.raises(SystemExit):
        prepare(out, corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50')
    assert os.listdir(victim) == []


# -- one schema check per artifact, regular files only (issue 36) ----------------------------------------------

@pytest.fixture
def data_copy(tmp_path, gen_data):
    d = tmp_path / 'data'
    shutil.copytree(gen_data, d)
    return d

def edit_meta(d, edit):
    meta = json.load(open(d / 'meta.json'))
    edit(meta)
    (d / 'meta.json').write_text(json.dumps(meta))

@pytest.mark.parametrize('path, value, field', [
    (('tokens', 'dtype'), 'int16', 'tokens.dtype'), (('tokens', 'dtype'), 'float16', 'tokens.dtype'),
    (('hot', 'sizes'), None, 'hot.sizes'), (('hot', 'sizes'), ['50', '200', '1000'], 'hot.sizes'),
    (('files',), [], 'files'), (('tokens', 'vocab_size'), 400.0, 'tokens.vocab_size'), (('ngrams', 'orders'), 'x', 'ngrams.orders')])
def test_an_edited_meta_json_is_refused_naming_the_field(data_copy, path, value, field):
    """274c17e read int16 ids as their dtype said and crashed on the rest (in the error-message builder for sizes: null)."""
    from engramlib.data import load_meta
    def edit(m):
        target = m
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
    edit_meta(data_copy, edit)
    with pytest.raises(DataError, match=f'{field} must be'):
        load_meta(str(data_copy))

def test_token_ids_outside_the_vocabulary_are_refused_though_the_checksum_matches(data_copy):
    from engramlib.data import TokenData, sha256_file
    import numpy as np
    train_bin = data_copy / 'train.bin'
    ids = np.fromfile(train_bin, dtype=np.uint16)
    ids[7] = 400                                             # the vocabulary is 0..399
    ids.tofile(train_bin)
    edit_meta(data_copy, lambda m: m['files'].update({'train.bin': sha256_file(str(train_bin))}))
    with pytest.raises(DataError, match='holds token id 400, outside the vocabulary of 400'):
        TokenData(str(data_copy), 2)

def test_hot_tiers_swapped_between_sizes_are_refused_though_the_checksums_match(data_copy):
    from engramlib.data import HotTier
    a, b = data_copy / 'hot' / 'n50', data_copy / 'hot' / 'n200'
    os.rename(a, data_copy / 'hot' / 'tmp')
    os.rename(b, a)
    os.rename(data_copy / 'hot' / 'tmp', b)
    def swap(m):
        f = m['files']
        for name in os.listdir(a):
            f[f'hot/n50/{name}'], f[f'hot/n200/{name}'] = f[f'hot/n200/{name}'], f[f'hot/n50/{name}']
    edit_meta(data_copy, swap)
    from engramlib.data import load_meta
    meta = load_meta(str(data_copy))
    for n in (50, 200):
        with pytest.raises(DataError, match='hot tiers of two sizes were swapped'):
            HotTier(str(data_copy), meta, n, 2)

def test_a_token_file_replaced_under_a_run_is_noticed_at_the_next_save(data_copy):
    from engramlib.data import TokenData
    data = TokenData(str(data_copy), 2)
    data.check_unchanged()
    shutil.copy(data_copy / 'val.bin', data_copy / 'val.new')
    os.replace(data_copy / 'val.new', data_copy / 'val.bin')    # the same bytes, another file: a rebuild
    with pytest.raises(DataError, match='changed while this run read it'):
        data.check_unchanged()

def test_a_token_file_cut_short_or_edited_in_place_under_a_run_is_an_error_line_not_a_signal(data_copy):
    """Issue 51, class 7: a token file truncated under a running run ends in a DataError at the next read (windows
    are read with pread: through the memory map the process died of SIGBUS); one rewritten in place with its size
    and mtime put back is caught by the sampled pages, which train.py checks before every eval row and checkpoint."""
    from engramlib.data import TokenData
    data = TokenData(str(data_copy), 2)
    before = data.windows('val', [0, 5], 16)
    assert all(np.array_equal(a, b) for a, b in zip(before, TokenData(str(data_copy), 2).windows('val', [0, 5], 16)))
    path = str(data_copy / 'val.bin')
    st = os.stat(path)
    with open(path, 'r+b') as f:                    # one token changed, in place; the size and mtime as they were
        first = f.read(2)
        f.seek(0)
        f.write(bytes([first[0] ^ 1, first[1]]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size
    with pytest.raises(DataError, match='changed while this run read it'):
        data.check_unchanged()
    os.truncate(path, 64)
    with pytest.raises(DataError, match='shorter than when this run opened it'):
        data.windows('val', [100], 16)

def test_every_reader_refuses_a_fifo_before_its_open_blocks(tmp_path, data_copy, broken):
    """274c17e blocked forever on a FIFO at meta.json, --ckpt, a config file or a prompt file."""
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    os.remove(data_copy / 'meta.json')
    os.mkfifo(data_copy / 'meta.json')
    cases = [(['train.py', broken['cfg'], f'--data_dir={data_copy}', f"--out_dir={tmp_path / 'o'}"], 'is a FIFO'),
             (['eval_stratified.py', '--ckpt', fifo], 'is a FIFO'), (['sample.py', '--ckpt', fifo], 'is a FIFO'),
             (['bench.py', '--preset', 'mdx', '--ckpt', fifo], 'is a FIFO'), (['train.py', fifo], 'not a regular file'),
             (['sample.py', '--ckpt', broken['ckpt'], '--start', f'FILE:{fifo}'], 'is a FIFO')]
    for args, message in cases:
        p = run(args, check=False, timeout=60)
        no_traceback_error(p)
        assert message in p.stderr, (args, p.stderr[-500:])


# -- a run dir is anything train.py writes; a resume checks everything it reads before writing (issue 36) ---------

@pytest.mark.parametrize('name', ['metrics.jsonl', 'best.pt', 'snapshots'])
def test_a_fresh_run_refuses_a_dir_holding_any_file_a_run_writes(tmp_path, gen_data, name):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    os.makedirs(os.path.join(cfg['out_dir'], 'snapshots'))
    p = os.path.join(cfg['out_dir'], name)
    open(os.path.join(p, 'iter_000002.pt') if name == 'snapshots' else p, 'w').write('kept')
    r = run(['train.py', cfg_path], check=False)
    assert r.returncode == 1 and f'holds a run ({name})' in r.stderr and '--overwrite=True' in r.stderr
    assert sorted(os.listdir(cfg['out_dir'])) == sorted({name, 'snapshots', '.lock'})

def test_a_fresh_run_takes_a_dir_whose_run_died_before_its_first_row(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    os.makedirs(os.path.join(cfg['out_dir'], 'snapshots'))
    for name in ('config.json', 'metrics.jsonl'):
        open(os.path.join(cfg['out_dir'], name), 'w').write('{}' if name == 'config.json' else '')
    run(['train.py', cfg_path])
    assert os.path.exists(os.path.join(cfg['out_dir'], 'summary.json'))

def resumable(tmp_path, broken):
    out = tmp_path / 'run'
    shutil.copytree(os.path.dirname(broken['ckpt']), out)
    return out, ['train.py', broken['cfg'], f'--out_dir={out}', "--init_from='resume'", '--max_iters=4', '--lr_decay_iters=4',
                 "--resume_changes=('lr_decay_iters',)"]

def test_a_resume_refuses_what_it_cannot_continue_before_writing_anything(tmp_path, broken):
    """A crafted checkpoint (iter_num -1 passes its checksum), a metrics row without a kind, metrics.jsonl deleted, other
    token files: refused with metrics.jsonl and config.json untouched (274c17e cut metrics back first, or went on)."""
    from engramlib.checkpoint import read_checkpoint
    out, args = resumable(tmp_path, broken)
    metrics, config = (out / 'metrics.jsonl').read_bytes(), (out / 'config.json').read_bytes()
    good = read_checkpoint(str(out / 'ckpt.pt'))
    def crafted(**over):
        save_checkpoint(str(out / 'ckpt.pt'), {**{k: v for k, v in good.items() if k != 'checksum'}, **over})
    for setup, message in [(lambda: crafted(iter_num=-1), "'iter_num' must be an integer >= 0"),
                           (lambda: crafted(data_files={'train.bin': 'another', 'val.bin': 'corpus'}), 'on other token files'),
                           (lambda: (out / 'metrics.jsonl').write_bytes(metrics + b'{"iter": 3}\n'), 'is not a metrics row')]:
        setup()
        p = run(args, check=False)
        no_traceback_error(p)
        assert message in p.stderr, p.stderr[-500:]
        assert (out / 'config.json').read_bytes() == config
        (out / 'metrics.jsonl').write_bytes(metrics)
        crafted()
    os.remove(out / 'metrics.jsonl')
    p = run(args, check=False)
    assert p.returncode == 1 and 'metrics.jsonl is missing' in p.stderr and not (out / 'metrics.jsonl').exists()
    crafted(data_files={'train.bin': 'another', 'val.bin': 'corpus'})
    (out / 'metrics.jsonl').write_bytes(metrics)
    run(args[:-1] + ["--resume_changes=('lr_decay_iters', 'data_files')"])    # allowed on purpose: it goes on
    assert rows(str(out))[-1]['iter'] == 4


# -- config files and command-line values (issue 36) ---------------------------------------------------------------

@pytest.mark.parametrize('text, message', [
    (b'import sys\nsys.exit(0)\n', 'called exit()'), (b'batch_size = 2\nx = 1 / 0\n', 'failed at line 2: ZeroDivisionError'),
    (b'# caf\xe9\nbatch_size = 2\n', 'is not UTF-8 text'), (b'learning_rate = lambda: 1\n', 'sets learning_rate to a function')])
def test_a_config_file_that_does_more_than_assign_keys_is_one_error(tmp_path, text, message):
    """274c17e exited 0 having trained nothing (sys.exit), let a function value become the default, and let
    ZeroDivisionError or UnicodeDecodeError escape as tracebacks."""
    from configurator import ConfigError, apply_config
    path = tmp_path / 'cfg.py'
    path.write_bytes(text)
    cfg = dict(train.default_config())
    with pytest.raises(ConfigError, match=message):
        apply_config(cfg, [str(path)], list(cfg))
    assert cfg == train.default_config()

@pytest.mark.parametrize('value', ["it's here", 'a b/*', '"quoted"', "'x'", '2024', 'r\\n'])
def test_a_string_value_reaches_the_run_exactly_as_given(value):
    """study.py and tools/gpu_check.py quoted paths by hand ('…'), which a quote in the path broke (runs went to a literal
    '…' path); override() writes what apply_config reads back exactly, and a bare value stays a string."""
    from configurator import apply_config, override
    cfg = dict(train.default_config())
    apply_config(cfg, [override('out_dir', value)], list(cfg))
    assert cfg['out_dir'] == value
    apply_config(cfg, ['--out_dir=2024'], list(cfg))
    assert cfg['out_dir'] == '2024'

CLI_VALUES = [
    ('train.py', ['{cfg}', '--seed=18446744073709551616'], '--seed must be in [0, 9223372036854775808)'),
    ('train.py', ['{cfg}', '--learning_rate=1e999'], '--learning_rate must be a finite number'),
    ('train.py', ['{cfg}', '--engram_layers=(1,1)'], 'names a block twice'),
    ('train.py', ['{cfg}', "--resume_changes=('max_iterz',)"], "Did you mean 'max_iters'"),
    ('train.py', ['{cfg}', "--device='cuda:99'"], '--device cuda:99'),
    ('sample.py', ['--ckpt', '{ckpt}', '--temperature', 'nan'], '--temperature a finite number'),
    ('sample.py', ['--ckpt', '{ckpt}', '--max_new_tokens', '10000000'], '--max_new_tokens in 1..100,000'),
    ('prepare_fineweb.py', ['--source', '{txt}', '--tokenizer', '{tok}', '--out', '{d}/x', '--memory_limit', 'inf'], '--memory_limit must be'),
    ('bench.py', ['--steps', '0'], '--steps and --table_scale must be >= 1'),
    ('bench.py', ['--preset', 'mdx', '--ckpt', '{crafted}'], 'model settings this code does not know'),
]

@pytest.mark.parametrize('script, args, message', CLI_VALUES, ids=[f'{s}:{" ".join(a)[:40]}' for s, a, _ in CLI_VALUES])
def test_every_command_line_value_is_checked_in_one_error_line(broken, script, args, message):
    p = run([script, *(a.format(**broken) for a in args)], check=False)
    no_traceback_error(p)
    assert message in p.stderr, p.stderr[-800:]

def test_a_tiny_temperature_or_top_p_samples_the_most_likely_token():
    """274c17e divided the logits by 1e-45 (inf - inf = nan) and compared top_p 1e-300 in float32 (0: every token
    dropped): both raised inside torch.multinomial."""
    from model import sample_token
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    logits[:, 45:] = -float('inf')
    top = logits.argmax(-1, keepdim=True)
    assert torch.equal(sample_token(logits, 1e-45), top)
    assert torch.equal(sample_token(logits, 0.8, top_k=200, top_p=1e-300), top)

def test_sample_streams_one_sample_and_prints_what_one_long_call_generates(broken, capsys):
    """One sample is printed as it grows (STREAM_STEP tokens per call); the chunks give the text one call gives."""
    import sample
    from factory import load_model
    from engramlib.tokens import Tokenizer
    sample.main(['--ckpt', broken['ckpt'], '--num_samples', '1', '--max_new_tokens', str(2 * sample.STREAM_STEP + 5),
                 '--seed', '5', '--device', 'cpu'])
    printed = capsys.readouterr().out.split('---------------')[0]
    model, ckpt, _, meta = load_model(broken['ckpt'])
    tok = Tokenizer.of(meta)
    x = torch.tensor([[tok.eot] + tok.encode_batch(['\n'])[0]])
    y = model.generate(x, 2 * sample.STREAM_STEP + 5, 0.8, 200, 1.0, generator=torch.Generator().manual_seed(5))
    assert printed == tok.decode(y[0, 1:].tolist()) + '\n'


# -- the study report skips a bad run and reports the rest (issue 36) -------------------------------------------------

def damage(d, how):
    if how == 'summary':
        (d / 'summary.json').write_text('{oops')
    elif how in ('row without kind', 'list row'):
        with open(d / 'metrics.jsonl', 'a') as f:
            f.write(('{"iter": 3}' if how == 'row without kind' else '[1, 2]') + '\n{"kind": "eval", "iter": 99}\n')
    else:
        cfg = json.load(open(d / 'config.json'))
        cfg['block_size'] = {'block_size 0': 0, 'block_size "64"': '64'}[how]
        (d / 'config.json').write_text(json.dumps(cfg))

@pytest.mark.parametrize('how', ['summary', 'row without kind', 'list row', 'block_size 0', 'block_size "64"'])
def test_a_damaged_run_is_skipped_with_its_reason(tmp_path, broken, how):
    from report.runs import load_run
    d = tmp_path / 'micro_s1'
    shutil.copytree(os.path.dirname(broken['ckpt']), d)
    load_run(str(d))
    damage(d, how)
    with pytest.raises(DataError):
        load_run(str(d))

def test_an_append_is_written_whole_or_not_at_all(tmp_path):
    """Issue 51: append_line ignored a short os.write; after a disk full for a moment a run ended rc 0 with
    metrics.jsonl holding half a row glued to the next, which every reader then refused."""
    from engramlib.fsafe import append_line
    path = tmp_path / 'metrics.jsonl'
    path.write_text('{"iter": 0}\n')
    short = lambda fd, b: os.write(fd, bytes(b[:3]))                       # at most 3 bytes a call: a short write
    append_line(str(path), '{"iter": 1}\n', write=short)
    assert path.read_text() == '{"iter": 0}\n{"iter": 1}\n'
    calls = []
    def fails_part_way(fd, b):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(28, 'No space left on device')
        return os.write(fd, bytes(b[:3]))
    with pytest.raises(OSError):
        append_line(str(path), '{"iter": 2}\n', write=fails_part_way)
    assert path.read_text() == '{"iter": 0}\n{"iter": 1}\n'                  # cut back: no half row left


def test_an_eval_only_resume_leaves_the_run_as_it_was_and_cleanup_takes_only_its_own_temps(tmp_path, gen_data):
    """Issue 51, class 2: --eval_only with --init_from='resume' on a finished run (its ckpt.pt the weights only)
    evaluates it and changes nothing in the run dir (summary.json, metrics.jsonl, config.json, ckpt.pt the same
    bytes); a run removes the temps of its own killed writes (.ckpt.pt.<random>.tmp, a snapshot's) but never a
    user's own .notes.tmp or a temp of a name it does not write."""
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4, eval_interval=2)
    out = cfg['out_dir']
    run(['train.py', cfg_path, "--final_ckpt='weights'"])
    files = ('summary.json', 'metrics.jsonl', 'config.json', 'ckpt.pt')
    before = {f: open(os.path.join(out, f), 'rb').read() for f in files}
    p = run(['train.py', cfg_path, "--init_from='resume'", '--eval_only=True'])
    last = json.loads(before['metrics.jsonl'].splitlines()[-1])
    assert f"eval 4: val {last['val_loss']:.4f}" in p.stdout and 'left as it is' in p.stdout
    assert {f: open(os.path.join(out, f), 'rb').read() for f in files} == before
    out = str(tmp_path / 'full')
    run(['train.py', cfg_path, f"--out_dir='{out}'"])
    theirs = [os.path.join(out, '.notes.tmp'), os.path.join(out, '.draft.md.abc12345.tmp'),
              os.path.join(out, 'snapshots', '.mine.abc12345.tmp'), os.path.join(out, 'notes', '.ckpt.pt.abc12345.tmp')]
    ours = [os.path.join(out, '.ckpt.pt.k1l2m3n4.tmp'), os.path.join(out, 'snapshots', '.iter_000002.pt.abc12345.tmp')]
    for f in theirs + ours:
        os.makedirs(os.path.dirname(f), exist_ok=True)
        open(f, 'w').write('x')
    run(['train.py', cfg_path, f"--out_dir='{out}'", "--init_from='resume'", '--max_iters=6'])
    assert all(os.path.exists(f) for f in theirs) and not any(os.path.exists(f) for f in ours)


def test_auto_resume_decides_under_the_lock_and_never_replaces_a_finished_run(tmp_path, gen_data):
    """Issue 49, item 7: study.py judged 'no checkpoint: restart with --overwrite=True' before train.py took the run
    dir's lock, so a run another study.py finished in between was retrained over. Now train.py decides under the lock
    (--auto_resume=True): a finished run is left as it is, a start that never saved a checkpoint is started afresh,
    and a run dir another process holds is refused before anything is read or written."""
    from engramlib.fsafe import DirLock
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2, eval_interval=2)
    out = cfg['out_dir']
    run(['train.py', cfg_path])
    files = {f: open(os.path.join(out, f), 'rb').read() for f in ('summary.json', 'metrics.jsonl', 'ckpt.pt')}
    p = run(['train.py', cfg_path, '--auto_resume=True'])
    assert 'is finished' in p.stdout and {f: open(os.path.join(out, f), 'rb').read() for f in files} == files
    os.remove(os.path.join(out, 'ckpt.pt'))
    os.remove(os.path.join(out, 'summary.json'))                # a start killed before its first checkpoint
    lock = DirLock(out)
    try:
        p = run(['train.py', cfg_path, '--auto_resume=True'], check=False)
        assert p.returncode == 1 and 'is in use by another run' in p.stderr
    finally:
        lock.release()
    run(['train.py', cfg_path, '--auto_resume=True'])
    assert open(os.path.join(out, 'metrics.jsonl'), 'rb').read() == files['metrics.jsonl']     # the same run, afresh
