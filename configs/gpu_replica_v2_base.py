# GPU replica v2 (issue 48): the regime where the data itself favours cold contexts at every share (docs/datamap.md):
# Tiny Shakespeare with its own BPE (32,768 asked, 21,528 learned), N_hot at the paper's hot coverages, 20 epochs.
# Data (once, on a CPU, offline; ~1 min):
#   bash gpu_study.sh --prepare --configs configs/gpu_replica_v2 --data data/gpu_replica_v2 --vocab_size 32768 \
#       --source assets/tinyshakespeare.txt data/gpu_replica_v2_pack
# On the GPU: bash gpu_study.sh --configs configs/gpu_replica_v2 --data data/gpu_replica_v2 data/gpu_replica_v2_pack
# The data's prediction (datamap, 1,024 val windows of 256): KN hot - cold +0.55 / +0.46 / +0.50 at full count for
# N_hot 1,307 / 3,307 / 5,658 (43.6 / 53.4 / 59.4% of train hot), and > 0 on every random share of the text (10%: +0.83,
# 30%: +0.63 at N_hot 1,307): a model that predicts rare-but-seen contexts as counting does must end with hot - cold > 0.
# What is not the paper's: 283K train tokens, so 20 epochs (5.6M tokens a run) and a backbone far larger than the text
# (the first replica's 6 x 512: 19M non-embedding parameters, 67 per train token; paper 0.89).
# Everything else is the first replica's (configs/gpu_replica_base.py).
include('gpu_replica_base.py')
data_dir = 'data/gpu_replica_v2'
out_dir = 'out/gpu_replica_v2/base'
block_size = 256
batch_size = 16             # 4,096 tokens a step: the first replica ran ~32 ms a step with 3 at once, so 16 runs fit a window
max_iters = 1380            # 20 epochs of 282,942 train tokens at 4,096 tokens a step
lr_decay_iters = 1380
warmup_iters = 28           # 2%
eval_interval = 69          # 5%
val_windows = 58            # all of val: 14,892 tokens = 58 windows of 256
eval_batch_size = 58
log_interval = 69
