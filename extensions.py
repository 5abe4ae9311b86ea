"""
Everything beyond the paper's model, registered into it in one place: the paper's open-question variants
(variants.py), MD-mix (mdmix.py) and the MD-mix notes' parts (mdx/). model.py, engram.py and layers.py import
nothing from here; importing this module adds the kinds to their registries and composes ModelConfig, the
paper's GPTConfig with every extension's options as fields and the Extensions whose hooks act on a model built
from it (model.Extension). train.py, checkpoints, eval and bench build their models from ModelConfig.

A new kind of part is one module that declares its options (an options.Group) plus one `register` line here;
a new change of the paper's parts is one model.Extension plus its line in EXTENSIONS.
"""
import variants
from layers import ATTENTION, BLOCKS, EMBEDDINGS, FFN, CausalSelfAttention
from mdx import attention_lsh, attention_sketch, cs_lora, embeddings, hash_moe, pkm, reversible
from model import BACKBONE, ENGRAM, LOSS, VOCAB, GPTConfig
from options import config_class

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

# in the order their hooks run: the variants' buffers before the adapters wrap the built model
EXTENSIONS = (variants.Variants(), hash_moe.UnigramCounts(), cs_lora.Adapters())

# the model's settings, as --help lists them; ModelConfig: GPTConfig's fields, then the extensions'
MODEL_GROUPS = [VOCAB, BACKBONE, ENGRAM, variants.VARIANTS, LOSS, *PART_GROUPS]
ModelConfig = config_class('ModelConfig', GPTConfig, [variants.VARIANTS, *PART_GROUPS], EXTENSIONS, __name__)
