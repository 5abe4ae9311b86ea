# Paper main comparison, collision-prone side: 2 orders x 2 heads x 500K slots x 64 = 128.0M table params
memory = 'hash'
table_size = 500_000
out_dir = 'out/hash_500k'
wandb_group = 'hash_500k'
