"""
Everything beyond the paper's model, registered into it in one place: the paper's open-question variants
(extensions/variants.py), MD-mix (../mdmix.py: its hash and its noise) and the MD-mix notes' parts (extensions/mdx/). Nothing in the
paper's model (model.py, engram.py, layers.py) or the library (engramlib/) imports from here: the dependency is
one-way, and without this folder the repo trains and evaluates the paper's model (tests/test_layout.py).
Importing it adds the kinds to the core's registries and composes ModelConfig, the paper's GPTConfig with every
extension's options as fields and the Extensions whose hooks act on a model built from it and on its run
(model.Extension). factory.py imports it.

A new kind of part is one module that declares its options (an options.Group) plus one `register` line here;
a new change of the paper's parts is one model.Extension plus its line in EXTENSIONS.
"""
import mdmix
from engram import HASHES
from extensions import variants
from layers import ATTENTION, BLOCKS, EMBEDDINGS, FFN, CausalSelfAttention
from extensions.mdx import attention_lsh, attention_sketch, cs_lora, embeddings, hash_moe, pkm, reversible
from model import BACKBONE, ENGRAM, LOSS, VOCAB, GPTConfig
from engramlib.options import config_class

PART_GROUPS = []

def register(registry, name, kind, options):
    registry[name] = kind
    if options not in PART_GROUPS:
        PART_GROUPS.append(options)

register(EMBEDDINGS, 'untied', embeddings.untied_embedding, embeddings.OPTIONS)
register(EMBEDDINGS, 'lowrank', embeddings.LowRankEmbedding, embeddings.OPTIONS)
register(EMBEDDINGS, 'mihe', embeddings.HashEmbedding, embeddings.OPTIONS)
register(ATTENTION, 'lsh', lambda config, i: CausalSelfAttention(config, i, attention_lsh.LSHAttention), attention_lsh.OPTIONS)
register(ATTENTION, 'sketch', lambda config, i: CausalSelfAttention(config, i, attention_sketch.SketchAttention),
         attention_sketch.OPTIONS)
register(ATTENTION, 'bucket', lambda config, i: CausalSelfAttention(config, i, attention_sketch.BucketAttention),
         attention_sketch.OPTIONS)
register(FFN, 'moe', hash_moe.MoE, hash_moe.OPTIONS)
register(FFN, 'pkm', pkm.MLPWithPKM, pkm.OPTIONS)
register(BLOCKS, 'reversible', reversible.RevBlock, reversible.OPTIONS)
PART_GROUPS.append(cs_lora.OPTIONS)     # adapters are attached after the init (cs_lora.Adapters), not a kind of part

HASHES['mdmix'] = lambda keys, order, mult, size: mdmix.mdmix_hash(keys, mult[:, 0], size)   # --engram_hash=mdmix

# in the order their hooks run: the variants' buffers before the adapters wrap the built model
EXTENSIONS = (variants.Variants(), hash_moe.UnigramCounts(), cs_lora.Adapters(), mdmix.NoiseHooks())

# the model's settings, as --help lists them; ModelConfig: GPTConfig's fields, then the extensions'
MODEL_GROUPS = [VOCAB, BACKBONE, ENGRAM, variants.VARIANTS, LOSS, *PART_GROUPS]
RUN_GROUPS = [mdmix.NOISE, variants.MAINTENANCE]      # the run's settings the extensions add (train.py --help)
ModelConfig = config_class('ModelConfig', GPTConfig, [variants.VARIANTS, *PART_GROUPS], EXTENSIONS, __name__)
