# Paper main config: hot 2 x 100K x 128 = 25.6M + cold 2 x 2 x 400K x 64 = 102.4M = 128.0M
memory = 'nine'
hot_size = 100_000
table_size = 400_000
out_dir = 'out/nine_100_400k'
wandb_group = 'nine_100_400k'
