"""Nothing read back is trusted unverified: artifacts and checkpoints carry checksums, a run dir has one
writer, a resume keeps its experiment, every config value is checked, and bad input gets `error: ...`."""
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

import prepare_fineweb as pf
from engramlib.checkpoint import CKPT_VERSION, save_checkpoint
from conftest import ROOT, prepare, run
from engramlib.data import DataError, load_meta, read_metrics
from test_train import micro_config, rows


def flip_byte(path, offset=-100):
    with open(path, 'r+b') as f:
        f.seek(offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))

@pytest.fixture
def data_copy(tmp_path, corpus):
    return prepare(tmp_path / 'data', corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50,200', '--val_frac', '0.1')

ARTIFACTS = ['train.bin', 'val.bin', 'canonical.npy', 'ngrams_o3_counts.npy', 'hot/n200/o2_keys.npy',
             'hot/n200/o3_counts.npy']

@pytest.mark.parametrize('rel', ARTIFACTS)
def test_a_damaged_artifact_is_refused_then_repaired_by_prepare(tmp_path, corpus, data_copy, rel):
    before = {r: open(os.path.join(data_copy, r), 'rb').read() for r in ARTIFACTS}
    flip_byte(os.path.join(data_copy, rel))
    cfg_path, _ = micro_config(tmp_path, data_copy, max_iters=2, lr_decay_iters=2, gate_inputs=('log_freq',))
    p = run(['train.py', cfg_path], check=False)
    assert p.returncode == 1 and f"{rel} does not match its checksum" in p.stderr and 'python prepare_fineweb.py' in p.stderr
    assert not os.path.exists(tmp_path / 'out' / 'ckpt.pt')
    p = run(['prepare_fineweb.py', '--source', corpus['txt'], '--tokenizer', corpus['tokenizer'], '--out', data_copy,
             '--hot_sizes', '50,200', '--val_frac', '0.1', '--num_proc', '1'])
    assert 'damaged or missing' in p.stdout
    assert all(open(os.path.join(data_copy, r), 'rb').read() == b for r, b in before.items())   # repaired, byte-identical
    run(['train.py', cfg_path])

def test_a_damaged_mphf_is_refused_where_it_is_read(data_copy):
    from engramlib.data import HotTier, load_meta
    flip_byte(os.path.join(data_copy, 'hot', 'n50', 'o2.mphf'), 40)
    with pytest.raises(DataError, match='o2.mphf does not match its checksum'):
        HotTier(data_copy, load_meta(data_copy), 50, 2).mphf()

def test_prepare_reuse_checks_the_source_and_tokenizer(tmp_path, corpus):
    src, tok = str(tmp_path / 'c.txt'), str(tmp_path / 't.json')
    shutil.copy(corpus['txt'], src), shutil.copy(corpus['tokenizer'], tok)
    out = str(tmp_path / 'd2')
    prepare(out, src, tok, '--hot_sizes', '50')
    with open(src, 'a') as f:
        f.write('one more line\n')
    p = run(['prepare_fineweb.py', '--source', src, '--tokenizer', tok, '--out', out, '--hot_sizes', '50', '--num_proc', '1'], check=False)
    assert p.returncode == 1 and 'source files changed' in p.stderr
    shutil.copy(corpus['txt'], src)
    spec = json.load(open(tok))
    spec['added_tokens'][0]['content'] = '<|other|>'
    json.dump(spec, open(tok, 'w'))
    p = run(['prepare_fineweb.py', '--source', src, '--tokenizer', tok, '--out', out, '--hot_sizes', '50', '--num_proc', '1'], check=False)
    assert p.returncode == 1 and ("is not the one that built" in p.stderr or 'no end-of-text token' in p.stderr)

def test_invalid_meta_json_and_missing_files_are_clear_errors(tmp_path, data_copy):
    cfg_path, _ = micro_config(tmp_path, data_copy, max_iters=2, lr_decay_iters=2)
    os.remove(os.path.join(data_copy, 'hot', 'n200', 'o3_keys.npy'))
    p = run(['train.py', cfg_path], check=False)
    assert p.returncode == 1 and 'o3_keys.npy is missing' in p.stderr and 'Traceback' not in p.stderr
    with open(os.path.join(data_copy, 'meta.json'), 'w') as f:
        f.write('{"tokens": ')
    p = run(['train.py', cfg_path], check=False)
    assert p.returncode == 1 and 'is not a valid meta.json' in p.stderr and 'Traceback' not in p.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory, gen_data):
    d = tmp_path_factory.mktemp('trained')
    cfg_path, cfg = micro_config(d, gen_data, max_iters=4, lr_decay_iters=4)
    run(['train.py', cfg_path])
    return d, cfg_path, cfg

def damaged_copy(tmp_path, trained, how):
    d, cfg_path, cfg = trained
    out = tmp_path / 'run'
    shutil.copytree(cfg['out_dir'], out)
    ckpt = out / 'ckpt.pt'
    data = bytearray(ckpt.read_bytes())
    if how == 'flipped':                 # 4 KB in the middle: lands in tensor data (AdamW moments, weights)
        mid = len(data) // 2
        data[mid:mid + 4096] = bytes(b ^ 0xA5 for b in data[mid:mid + 4096])
    elif how == 'truncated':
        data = data[:len(data) // 3]
    elif how == 'empty':
        data = bytearray()
    elif how == 'random':
        data = bytearray(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    ckpt.write_bytes(bytes(data))
    return str(out), cfg_path

@pytest.mark.parametrize('how, message', [('flipped', 'does not match its checksum'), ('truncated', 'not a readable checkpoint'),
                                          ('empty', 'not a readable checkpoint'), ('random', 'not a readable checkpoint')])
def test_a_damaged_checkpoint_is_refused_by_resume_and_eval(tmp_path, trained, how, message):
    out, cfg_path = damaged_copy(tmp_path, trained, how)
    p = run(['train.py', cfg_path, f"--out_dir='{out}'", "--init_from='resume'", '--max_iters=8'], check=False)
    assert p.returncode == 1 and message in p.stderr and 'Traceback' not in p.stderr, p.stderr[-1500:]
    p = run(['eval_stratified.py', '--ckpt', os.path.join(out, 'ckpt.pt')], check=False)
    assert p.returncode == 1 and message in p.stderr and 'Traceback' not in p.stderr

def test_a_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))
    path = tmp_path / 'ckpt.pt'
    torch.save({'format_version': CKPT_VERSION, 'x': Evil()}, path)
    p = run(['eval_stratified.py', '--ckpt', str(path)], check=False)
    assert p.returncode == 1 and 'refused to load' in p.stderr and 'pwned' not in p.stdout

def test_non_finite_weights_are_never_saved(tmp_path, gen_data):
    import train
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=4, lr_decay_iters=4)
    run(['train.py', cfg_path])
    good = open(os.path.join(cfg['out_dir'], 'ckpt.pt'), 'rb').read()
    t = train.Trainer(train.Run({**train.default_config(), **cfg, 'init_from': 'resume', 'max_iters': 8}))
    with torch.no_grad():
        t.run.raw_model.memory.table.weight[3, 0] = float('nan')
    with pytest.raises(FloatingPointError, match=r'memory.table.weight.*not saved.*untouched'):
        t.save()
    t.ckpt.writer.wait()
    assert open(os.path.join(cfg['out_dir'], 'ckpt.pt'), 'rb').read() == good

def test_a_bad_write_never_replaces_the_checkpoint(tmp_path, monkeypatch):
    from engramlib import checkpoint
    path = str(tmp_path / 'ckpt.pt')
    save_checkpoint(path, {'format_version': CKPT_VERSION, 'w': torch.ones(4)})
    good = open(path, 'rb').read()
    real = torch.save
    def corrupt(obj, f):               # the bytes on disk differ from what was meant (bad disk, bit rot)
        obj = {**obj, 'w': obj['w'] + 1}
        real(obj, f)
    monkeypatch.setattr(checkpoint.torch, 'save', corrupt)
    with pytest.raises(DataError, match='does not match its checksum'):
        save_checkpoint(path, {'format_version': CKPT_VERSION, 'w': torch.zeros(4)})
    assert open(path, 'rb').read() == good and os.listdir(tmp_path) == ['ckpt.pt']


def test_one_writer_per_run_dir_and_no_stale_lock(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=400, lr_decay_iters=400, eval_interval=50)
    first = subprocess.Popen([sys.executable, 'train.py', cfg_path], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        log = os.path.join(cfg['out_dir'], 'metrics.jsonl')
        t0 = time.time()
        while not os.path.exists(log) and time.time() - t0 < 60:
            time.sleep(0.05)
        second = run(['train.py', cfg_path], check=False)
        assert second.returncode == 1 and 'is in use by another run (pid' in second.stderr
        p = run(['eval_stratified.py', '--runs', cfg['out_dir']], check=False)
        assert p.returncode == 1 and 'is still being trained' in p.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    p = run(['train.py', cfg_path, '--max_iters=4', '--lr_decay_iters=4', '--overwrite=True'])   # the dead holder's lock is gone
    assert rows(cfg['out_dir'])[-1]['iter'] == 4


@pytest.mark.parametrize('over, keys', [
    (["--memory='hash'"], ['memory']),
    (['--engram_hash_seed=7'], ['engram_hash_seed']),
    (['--seed=3', '--learning_rate=0.001'], ['learning_rate', 'seed']),
    (['--batch_size=8'], ['global_batch']),
])
def test_resume_refuses_another_experiment(tmp_path, trained, over, keys):
    d, cfg_path, cfg = trained
    out = str(tmp_path / 'run')
    shutil.copytree(cfg['out_dir'], out)
    p = run(['train.py', cfg_path, f"--out_dir='{out}'", "--init_from='resume'", '--max_iters=8', *over], check=False)
    assert p.returncode == 1 and 'resuming' in p.stderr and 'another experiment' in p.stderr
    for k in keys:
        assert f'{k}: checkpoint' in p.stderr
    assert f"--resume_changes=\"{tuple(sorted(keys))}\"" in p.stderr

def test_resume_with_a_new_split_and_an_allowed_change_goes_on(tmp_path, trained):
    d, cfg_path, cfg = trained
    out = str(tmp_path / 'run')
    shutil.copytree(cfg['out_dir'], out)
    run(['train.py', cfg_path, f"--out_dir='{out}'", "--init_from='resume'", '--max_iters=8', '--batch_size=8',
         '--gradient_accumulation_steps=1', '--min_lr=1e-4', "--resume_changes=('min_lr',)"])
    assert rows(out)[-1]['iter'] == 8


@pytest.mark.parametrize('over, message', [
    (['--eval_interval=0'], '--eval_interval must be > 0'),
    (['--log_interval=-1'], '--log_interval must be > 0'),
    (['--val_windows=0'], '--val_windows must be > 0'),
    (['--batch_size=0'], '--batch_size must be > 0'),
    (['--max_iters=0'], '--max_iters=0 trains nothing'),
    (['--ckpt_interval=-5'], '--ckpt_interval must be >= 0'),
    (['--dropout=1.5'], '--dropout must be in [0, 1)'),
    (['--learning_rate=0.0'], '--learning_rate must be > 0'),
    (['--warmup_iters=100'], '--warmup_iters 100 > --lr_decay_iters'),
    (["--memory='none'", '--hot_dropout=0.1'], "memory='none' has no Engram memory"),
    (["--memory='hash'", "--hot_index='hashed'"], "act on Nine's hot tier"),
    (['--engram_layers=()'], 'reads no memory'),
    (["--dtype='int8'"], '--dtype must be one of'),
    (["--init_from='scratchh'"], "--init_from must be 'scratch', 'resume' or a checkpoint path"),
])
def test_every_config_value_is_checked_before_anything_is_written(tmp_path, gen_data, over, message):
    cfg_path, cfg = micro_config(tmp_path, gen_data)
    p = run(['train.py', cfg_path, *over], check=False)
    assert p.returncode == 1 and message in p.stderr and 'Traceback' not in p.stderr, p.stderr[-800:]
    assert not os.path.exists(cfg['out_dir'])

def test_an_out_dir_that_is_a_file_is_a_clear_error(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=2, lr_decay_iters=2)
    open(cfg['out_dir'], 'w').close()
    p = run(['train.py', cfg_path], check=False)
    assert p.returncode == 1 and p.stderr.startswith('error:') and 'Traceback' not in p.stderr


def test_a_truncated_last_metrics_line_is_dropped_on_resume(tmp_path, gen_data):
    cfg_path, cfg = micro_config(tmp_path, gen_data, max_iters=8, lr_decay_iters=8)
    run(['train.py', cfg_path, '--max_iters=4', "--resume_changes=('max_iters',)"])
    log = os.path.join(cfg['out_dir'], 'metrics.jsonl')
    with open(log, 'a') as f:
        f.write('{"kind": "train", "iter": 5, "tra')                       # a crash mid-line
    p = run(['train.py', cfg_path, "--init_from='resume'"])
    assert 'dropped its last line' in p.stderr and rows(cfg['out_dir'])[-1]['iter'] == 8
    with open(log, 'a') as f:
        f.write('not json\n{"kind": "eval", "iter": 9}\n')
    with pytest.raises(DataError, match='line .* is not a JSON row'):
        read_metrics(log)

def test_the_study_report_skips_bad_runs_and_names_them(tmp_path, gen_data):
    good_cfg, good = micro_config(tmp_path, gen_data, name='good.py', max_iters=4, lr_decay_iters=4, out_dir=str(tmp_path / 'runs' / 'good'))
    run(['train.py', good_cfg])
    mixed = tmp_path / 'runs' / 'mixed'
    shutil.copytree(good['out_dir'], mixed)
    with open(mixed / 'metrics.jsonl', 'a') as f:                          # a second writer's rows
        f.write(open(mixed / 'metrics.jsonl').read())
    p = run(['eval_stratified.py', '--runs', str(tmp_path / 'runs' / '*'), '--report', str(tmp_path / 'rep')])
    md = open(tmp_path / 'rep' / 'report.md').read()
    assert 'Skipped runs' in md and 'duplicated or out-of-order' in md and str(mixed) in md
    assert json.load(open(tmp_path / 'rep' / 'report.json'))['table3'].keys() == {'good'}


def test_a_truncated_mphf_is_caught_before_it_replaces_anything(tmp_path, data_copy):
    good = os.path.join(data_copy, 'hot', 'n50', 'o2.mphf')
    bad = str(tmp_path / 'o2.mphf.tmp')
    open(bad, 'wb').write(open(good, 'rb').read()[:50])                    # what save() leaves on a full disk
    with pytest.raises(DataError, match='does not load back'):
        pf.check_saved_mphf(bad, os.path.join(data_copy, 'hot', 'n50', 'o2_keys.npy'))
    assert not os.path.exists(bad)
    pf.check_saved_mphf(good, os.path.join(data_copy, 'hot', 'n50', 'o2_keys.npy'))    # the real one passes

def test_a_huge_one_line_document_is_cut_to_what_the_run_can_use(tmp_path, corpus, monkeypatch):
    seen = []
    real = pf.Tokenizer.encode_batch
    monkeypatch.setattr(pf.Tokenizer, 'encode_batch', lambda self, texts: seen.extend(map(len, texts)) or real(self, texts))
    src = tmp_path / 'huge.txt'
    src.write_text('the cat sat on the mat ' * 200_000)                      # 4.6M characters, one line
    prepare(tmp_path / 'd', str(src), corpus['tokenizer'], '--num_tokens', '1000', '--hot_sizes', '10')
    assert max(seen) == 1000 * pf.MAX_CHARS_PER_TOKEN
    assert json.load(open(tmp_path / 'd' / 'meta.json'))['tokens']['n_tokens'] == 1000

def test_a_data_dir_from_before_the_baseline_counts_gets_a_clear_error_and_prepare_adds_only_them(tmp_path, corpus, data_copy):
    from engramlib.data import load_counts, save_json
    meta = load_meta(data_copy)
    for rel in ('rawgrams_o3_keys.npy', 'rawgrams_o3_counts.npy'):
        os.remove(os.path.join(data_copy, rel))
        meta['files'].pop(rel)
    meta.pop('rawgrams')
    save_json(os.path.join(data_copy, 'meta.json'), meta)                 # as prepared before the stage existed
    with pytest.raises(DataError, match='no raw-id trigram counts.*Re-run python prepare_fineweb.py'):
        load_counts(data_copy, load_meta(data_copy), 3, 'rawgrams')
    before = os.stat(os.path.join(data_copy, 'ngrams_o3_keys.npy')).st_mtime_ns
    prepare(data_copy, corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50,200', '--val_frac', '0.1')
    assert os.stat(os.path.join(data_copy, 'ngrams_o3_keys.npy')).st_mtime_ns == before
    assert len(load_counts(data_copy, load_meta(data_copy), 3, 'rawgrams')[0]) == load_meta(data_copy)['rawgrams']['distinct']


def checkpoint_reads():
    """The checkpoint keys the readers' code takes (train, factory, sample, eval, bench, the library, the report, the
    tools): {'': top-level keys, key: the keys read inside ckpt[key]}; `.get(k, default)` with a default is safe."""
    import ast
    import glob
    files = ['train.py', 'factory.py', 'sample.py', 'eval_stratified.py', 'bench.py'] + [
        f for d in ('engramlib', 'report', 'tools') for f in glob.glob(os.path.join(d, '*.py'))]
    reads = {'': set()}
    is_ckpt = lambda n: isinstance(n, ast.Name) and n.id in ('ckpt', 'base')
    for f in files:
        for n in ast.walk(ast.parse(open(os.path.join(ROOT, f)).read())):
            if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant):
                on, key = n.value, n.slice.value
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == 'get' and len(n.args) == 1
                  and isinstance(n.args[0], ast.Constant)):
                on, key = n.func.value, n.args[0].value
            else:
                continue
            if is_ckpt(on) and not (f.startswith('tools/gpu_study') and on.id == 'base'):    # there: a config dict
                reads[''].add(key)
            elif isinstance(on, ast.Subscript) and is_ckpt(on.value) and isinstance(on.slice, ast.Constant):
                reads.setdefault(on.slice.value, set()).add(key)
    return reads

def test_every_checkpoint_key_a_reader_takes_is_in_the_schema(tmp_path):
    """Issue 51, class 8: a checkpoint that passes its checksum but lacks a key some reader takes is refused in one
    line when it is loaded, never a KeyError later (the walk fails when a reader takes a key the schema lacks)."""
    from engramlib.checkpoint import CKPT_OPTIONAL, CKPT_SCHEMA, CONFIG_READ, load_checkpoint
    reads = checkpoint_reads()
    assert {'iter_num', 'config', 'model', 'rng', 'wandb_id', 'data_files'} <= reads['']          # the walk sees them
    assert reads[''] <= set(CKPT_SCHEMA) | set(CKPT_OPTIONAL) | {'format_version', 'checksum'}, reads['']
    assert reads['config'] <= set(CONFIG_READ) and 'dtype' in reads['config'], reads['config']
    assert reads['model_args'] <= {'hot_size'} and reads['rng'] <= {'torch', 'cuda'}
    good = {'format_version': CKPT_VERSION, 'model_args': {'hot_size': 4}, 'model': {}, 'data_signature': {}, 'iter_num': 0,
            'config': {'data_dir': 'd', 'dtype': 'float32', 'eval_batch_size': 4, 'val_windows': 8}}
    save_checkpoint(str(tmp_path / 'good.pt'), good)
    assert load_checkpoint(str(tmp_path / 'good.pt'))['iter_num'] == 0
    for key in CONFIG_READ:
        path = str(tmp_path / f'no_{key}.pt')
        save_checkpoint(path, {**good, 'config': {k: v for k, v in good['config'].items() if k != key}})
        with pytest.raises(DataError, match=f"'config' must be an object with .*{key}"):
            load_checkpoint(path)
    save_checkpoint(str(tmp_path / 'ids.pt'), {**good, 'wandb_id': 7})
    with pytest.raises(DataError, match="'wandb_id' must be a wandb run id or None"):
        load_checkpoint(str(tmp_path / 'ids.pt'))
