"""
The composition root: a model from a config and a data dir. The paper's model (model.py) with the parts of
every extension in extensions/ (registered there, in one place); without that folder, the paper's model alone.
What ties a model to a data dir (the data signature: tokenizer, canonical map, hot tier checksums) is checked
here, before a model is built or a checkpoint's weights are loaded into it. train.py, eval_stratified.py,
sample.py, bench.py and the report build their models through here.
"""
from configurator import ConfigError
from engram import NgramIndex, has_hot_tier
from engramlib import checkpoint
from engramlib.checkpoint import HOT_TIER_KEY, check_signature, load_weights
from engramlib.data import DataError, HotTier, load_canonical, load_counts, load_meta, tokenizer_signature
from engramlib.options import config_class
from model import BACKBONE, ENGRAM, GPT, LOSS, VOCAB, GPTConfig, index_class, needs_counts

try:
    import extensions           # registers the extensions' kinds; ModelConfig: GPTConfig + their options
    ModelConfig, MODEL_GROUPS, RUN_GROUPS = extensions.ModelConfig, extensions.MODEL_GROUPS, extensions.RUN_GROUPS
    EXTENDED = True
except ModuleNotFoundError as e:
    if e.name != 'extensions':
        raise
    ModelConfig = config_class('ModelConfig', GPTConfig, [], (), __name__)     # the paper's model, nothing else
    MODEL_GROUPS, RUN_GROUPS, EXTENDED = [VOCAB, BACKBONE, ENGRAM, LOSS], [], False
EXTENSIONS = ModelConfig.extensions     # their hooks: on the model (model.Extension) and on the run (train.py)

def model_config(cfg, vocab_size):
    """A run config's model: its ModelConfig keys, the data's vocabulary (padded by the caller), and with
    hash_seed_from_seed the seed's own hash seed."""
    args = {k: cfg[k] for k in ModelConfig.keys() if k in cfg}
    args['vocab_size'] = vocab_size
    if cfg.get('hash_seed_from_seed'):
        args['engram_hash_seed'] = cfg['seed']
    return ModelConfig.from_args(**args)

def load_checkpoint(path, hint="Train first, or set init_from='scratch'."):
    """A checkpoint (engramlib.checkpoint: checksum, schema) whose model settings this code knows."""
    return checkpoint.load_checkpoint(path, hint, ModelConfig.keys(),
                                      '' if EXTENDED else ', with the extensions/ folder that wrote them')

def tier_index(data_dir, meta, hot_size, orders, counts=False, kind=NgramIndex):
    """The data dir's n-gram index with its hot tier of N_hot = hot_size (Nine's routes, every model's is_hot
    labels) and, with counts, the training count of every distinct n-gram. Returns the index (of `kind`) and
    the hot tiers' checksums."""
    tiers = {o: HotTier(data_dir, meta, hot_size, o) for o in orders}
    counts = {o: load_counts(data_dir, meta, o) for o in orders} if counts else None
    index = kind(load_canonical(data_dir, meta), {o: t.sorted_index() for o, t in tiers.items()}, orders, counts)
    return index, {str(o): t.sha256 for o, t in tiers.items()}

def load_index(data_dir, meta, mcfg):
    """The n-gram index of a data dir for a model config, with what its extensions need, and the data signature
    a model trained on it carries."""
    index, hot_sha = tier_index(data_dir, meta, mcfg.hot_size, tuple(mcfg.ngram_orders), needs_counts(mcfg), index_class(mcfg))
    for e in mcfg.extensions:
        e.extend_index(index, mcfg, data_dir, meta)
    return index, data_signature(meta, hot_sha)

def build_model(mcfg, index, noise=None, shapes_only=False):
    """The one place a GPT is built (train, eval, key stability, bench): config errors become ConfigError."""
    try:
        return GPT(mcfg, index=index, noise=noise, shapes_only=shapes_only)
    except AssertionError as e:
        raise ConfigError(f"bad model config: {e}") from None

def load_model(ckpt_path, data_dir=None, hot_size=None):
    """The checkpoint's model on its data dir, in eval mode (eval_stratified.py, sample.py). Nine routes by its own hot tier, which must match the
    data dir exactly; Hash/baseline may be labelled with another N_hot (post-hoc, as in the paper)."""
    ckpt = load_checkpoint(ckpt_path, hint="--ckpt takes a run's ckpt.pt or best.pt (train.py writes <out_dir>/ckpt.pt; "
                                           "bash quickstart.sh makes out/quickstart/tiny_nine_s0/ckpt.pt).")
    data_dir = data_dir or ckpt['config']['data_dir']
    meta = load_meta(data_dir)
    args = dict(ckpt.get('model_args', {}))
    if hot_size and hot_size != args['hot_size']:
        if has_hot_tier(args['memory']):
            raise DataError(f"{ckpt_path} is a Nine model routed by N_hot={args['hot_size']}; its is_hot labels "
                            f"are its routes, so --hot_size {hot_size} does not apply.")
        args['hot_size'] = hot_size
    try:
        mcfg = ModelConfig.from_args(**args)
    except (TypeError, ValueError) as e:
        raise DataError(f"{ckpt_path} has model settings this code cannot build ({e}). Only load checkpoints this repo wrote.") from None
    index, current = load_index(data_dir, meta, mcfg)
    # labelled post hoc with another N_hot (a Nine model was refused above): its own hot tier does not apply
    check_signature(ckpt['data_signature'], current, f"checkpoint {ckpt_path}",
                    hot_tier=mcfg.hot_size == ckpt['model_args']['hot_size'])
    try:
        model = build_model(mcfg, index)
    except (ConfigError, TypeError, ValueError) as e:
        raise DataError(f"{ckpt_path} has model settings this code cannot build ({e}). Only load checkpoints this repo wrote.") from None
    load_weights(model, ckpt['model'], f"checkpoint {ckpt_path}")
    model.eval()
    return model, ckpt, data_dir, meta

def data_signature(meta, hot_sha):
    return {**tokenizer_signature(meta), HOT_TIER_KEY: hot_sha}

