# Issue 25 item 5: the replica moved along "progress" (loss vs the KN baseline) by a longer run: 2.0 epochs
# (1240 iters x 16 x 256 = 5.08M tokens of 2.95M train) at the same schedule shape (warmup 2%, cosine, evals every 5%)
include('../replica/nine_100_400k.py')
max_iters = 1240
lr_decay_iters = 1240
warmup_iters = 25
eval_interval = 62
ckpt_interval = 310
out_dir = 'out/replica_axes/nine_100_400k_2ep'
