"""Shared fixtures: the repo's embedded data (assets/), generated data, and the FineWeb-Edu sample
when ../shared is there (skipped otherwise)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.environ.get('SHARED_DATA', os.path.join(ROOT, '..', 'shared', 'data'))
GPT2 = os.path.join(ROOT, 'assets', 'gpt2.tiktoken')
SHAKESPEARE = os.path.join(ROOT, 'assets', 'tinyshakespeare.txt')
FINEWEB_CSV = os.path.join(SHARED, 'fineweb_edu_sample-10BT_150docs_llm_scored.csv')
os.environ['WANDB_MODE'] = 'disabled'         # tests that read wandb back turn it on (offline) themselves
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')

WORDS = ("the of and to a in is it that was he for on are as with his they at be this from have or by "
         "one had not but what all were when we there can an your which their said if do will each about "
         "how up out them then she many some so these would other into has more her two like him see time "
         "Apple apple APPLE café cafe naïve Über über").split()

def need_shared(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (tests with generated data cover the same properties)")
    return path

def run_killing(command, started, rng, n_kills, pause, limit_s):
    """Run command() (argv, run in ROOT) until it exits 0; the first n_kills times, kill -9 it once the
    predicate started() returns (made right after the start) holds and a random pause(rng) has passed.
    Returns the number of kills."""
    kills, t0 = 0, time.time()
    while True:
        p = subprocess.Popen(command(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < n_kills:
            ready = started()
            while p.poll() is None and not ready():
                time.sleep(0.005)
            time.sleep(pause(rng))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
        _, err = p.communicate()
        if p.returncode == 0:
            return kills
        assert p.returncode == -signal.SIGKILL, err.decode()[-2000:]
        assert time.time() - t0 < limit_s

def run(args, check=True, timeout=600, **kw):
    """Run a repo script as a user would; returns the CompletedProcess. A run past `timeout` seconds (a hang:
    no test's script takes a tenth of it) fails the test, its whole process group killed (torchrun's ranks too)."""
    with subprocess.Popen([sys.executable] + args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"{args} still running after {timeout} s (killed):\n{out[-3000:]}\n{err[-3000:]}")
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p

def write_corpus(path, n_docs=300, seed=0):
    """Zipf-distributed words in short documents, one per line."""
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, len(WORDS) + 1) ** 1.1
    p /= p.sum()
    docs = [' '.join(rng.choice(WORDS, size=rng.integers(20, 120), p=p)) + '.' for _ in range(n_docs)]
    with open(path, 'w') as f:
        f.write('\n'.join(docs) + '\n')
    return docs

def train_bpe(texts, path, vocab_size=400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=['<|endoftext|>'],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(path)
    return path

def make_corpus(d):
    """The generated corpus in d and its BPE tokenizer, trained on the fly."""
    docs = write_corpus(os.path.join(d, 'corpus.txt'))
    tok = train_bpe(docs, os.path.join(d, 'tokenizer.json'))
    return {'dir': d, 'txt': os.path.join(d, 'corpus.txt'), 'docs': docs, 'tokenizer': tok}

@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp('corpus')))

def prepare(out, source, tokenizer, *extra):
    import prepare_fineweb
    prepare_fineweb.main(['--source', source, '--tokenizer', tokenizer, '--out', str(out), '--num_proc', '1', *extra])
    return str(out)

def make_gen_data(out, corpus):
    """The generated corpus prepared with small hot tiers."""
    return prepare(out, corpus['txt'], corpus['tokenizer'], '--hot_sizes', '50,200,1000', '--val_frac', '0.1')

@pytest.fixture(scope='session')
def gen_data(corpus, tmp_path_factory):
    """make_gen_data's dir; ENGRAM_GEN_DATA names one prepared beforehand (gpu_check.sh --prepare: a GPU image
    has no bbhash to build hot tiers)."""
    return os.environ.get('ENGRAM_GEN_DATA') or make_gen_data(tmp_path_factory.mktemp('gen') / 'data', corpus)

@pytest.fixture(scope='session')
def shakespeare_data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp('shk') / 'data', SHAKESPEARE, 'gpt2')

@pytest.fixture(scope='session')
def fineweb_data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp('fw') / 'data', need_shared(FINEWEB_CSV), 'gpt2')
