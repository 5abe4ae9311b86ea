# N_hot ablation: hot 2 x 50K x 128 = 12.8M + cold 2 x 2 x 450K x 64 = 115.2M = 128.0M
memory = 'nine'
hot_size = 50_000
table_size = 450_000
out_dir = 'out/nine_50_450k'
wandb_group = 'nine_50_450k'
