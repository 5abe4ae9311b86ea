"""The GPU check (gpu_check.sh): its dry run passes on a CPU with the packages a bare GPU image lacks
(datasets, wandb, bbhash) made unimportable, and writes its JSON and Markdown reports."""
import json
import os
import subprocess
import sys

from conftest import ROOT

BLOCKER = '''import sys
class GpuImage:
    """A bare GPU image: these packages are not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('datasets', 'wandb', 'bbhash'):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: the GPU image lacks it)", name=name)
        return None
sys.meta_path.insert(0, GpuImage())
'''

def test_the_gpu_check_dry_run_passes_without_datasets_wandb_or_bbhash(tmp_path):
    data, out, block = tmp_path / 'data', tmp_path / 'out', tmp_path / 'block'
    env = {**os.environ, 'PYTHON': sys.executable}
    p = subprocess.run(['bash', 'gpu_check.sh', '--prepare', str(data)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(data) for f in fs)
    assert size <= 60 * 2**20
    block.mkdir()
    (block / 'sitecustomize.py').write_text(BLOCKER)
    p = subprocess.run(['bash', 'gpu_check.sh', '--dry', str(data), str(out)], cwd=ROOT, capture_output=True, text=True,
                       env={**env, 'PYTHONPATH': str(block)})
    res = json.load(open(out / 'gpu_check.json'))
    assert p.returncode == 0, (p.stdout[-2000:], json.dumps(res['steps'], indent=1)[-3000:])
    assert res['environment']['missing_packages'] == ['datasets', 'wandb', 'bbhash']
    assert [s['status'] for s in res['steps'].values()] == ['pass'] * 5
    assert 'budget' in p.stdout and all(f'[{s}]' in p.stdout for s in ('tests', 'bench', 'cadence', 'agree', 'ddp'))
    bench = res['steps']['bench']['figures']          # issue 40's question, asked by every GPU check: chunked vs plain head
    assert bench['chunked_over_plain_head_step_time'] > 0 and set(bench['head_ms']) == {'plain', 'chunk 128', 'chunk 32'}
    figs = res['steps']['agree']['figures']
    assert figs['ckpt_eval_val_loss'] == figs['train_eval_val_loss'] and figs['deterministic_resume_rows_equal']
    assert figs['greedy_samples_equal_with_and_without_kv_cache']
    cad = res['steps']['cadence']['figures']          # the first eval and save apart from the steady ones, and the shares
    assert cad['iters'] == 16 and cad['first_eval_s'] > 0 and cad['steady_eval_s'] > 0 and cad['first_save_blocked_s'] >= 0
    assert 0 < cad['eval_share'] < 1 and 0 <= cad['save_share'] < 1 and 0 < cad['startup_share'] < 1
    assert set(cad['goals_met']) == {'steady_eval_within_1.25x_forward', 'saves_at_most_1pct'}
    md = (out / 'gpu_check.md').read_text()
    assert '| agree | pass |' in md and 'absent: datasets, wandb, bbhash' in md
