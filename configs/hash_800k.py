# Ablation (paper Table 3). NOTE: 2 x 2 x 800K x 64 = 204.8M table params, not the paper's 128M.
memory = 'hash'
table_size = 800_000
out_dir = 'out/hash_800k'
wandb_group = 'hash_800k'
