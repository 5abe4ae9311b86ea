# The replica (issue 25): the paper's regime at laptop scale, matched on dimensionless quantities, not sizes.
# Data (once, offline; any local corpus of ~3M tokens; techdocs.jsonl is one):
#   python -m tools.replica_corpus --source techdocs.jsonl --out data/replica_src --vocab_size 8192
#   python prepare_fineweb.py --source data/replica_src/corpus.jsonl --tokenizer data/replica_src/tokenizer.json \
#       --hot_sizes 2400,6000,12000 --out data/replica
# Then: python study.py configs/replica/hash_500k.py configs/replica/nine_100_400k.py --seeds=0,1,2,3 --jobs=2 \
#       --out=out/replica --report=reports/replica
# Matched (README "Replica" and LOG.md 2026-12-01 give the measured values):
#   hot coverage of train, any order: 58.1% at N_hot = 12,000 (paper 59%; 2-gram 56.7% vs 55%, 3-gram 24.7% vs 23%)
#   epochs: 620 iters x 16 x 256 = 2.54M tokens of 2.95M train = 0.86 (paper 82M of 95M = 0.86)
#   schedule: warmup 12 = 2% of iters, cosine to lr/10, eval every 31 iters = 5% (paper 100, 6e-4 -> 6e-5, 250 of 5000)
#   hot share of the tables: N_hot / table_size = 12,000 / 60,000 = 20% (paper 100K / 500K); iso-parameter exact
#   Engram layers 1, 2, 3 of 6 = the paper's 2, 4, 6 of 12 (same relative depths)
data_dir = 'data/replica'
out_dir = 'out/replica/base'
n_layer = 6
n_head = 4
n_embd = 128
engram_layers = (1, 2, 3)
engram_head_dim = 16        # memory vector 2 orders x 2 heads x 16 = 64 = n_embd / 2 (paper 256 / 768)
block_size = 256
batch_size = 16
gradient_accumulation_steps = 1
max_iters = 620
lr_decay_iters = 620
warmup_iters = 12
learning_rate = 3e-3
min_lr = 3e-4
eval_interval = 31
val_windows = 128           # 32,768 fixed val positions (21% of val)
eval_batch_size = 32
log_interval = 31
ckpt_interval = 155         # 4 saves a run: a killed run resumes
device = 'cpu'
dtype = 'bfloat16'          # CPU autocast: 1.45x the fp32 speed on this AMX CPU
compile = False
