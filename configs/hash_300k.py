# Ablation (paper Table 3). NOTE: 2 x 2 x 300K x 64 = 76.8M table params, not the paper's 128M total
# (64-dim heads cannot hold 128M at 300K slots); implemented as stated, true count reported.
memory = 'hash'
table_size = 300_000
out_dir = 'out/hash_300k'
wandb_group = 'hash_300k'
