# N_hot ablation: hot 2 x 20K x 128 = 5.12M + cold 2 x 2 x 480K x 64 = 122.88M = 128.0M
memory = 'nine'
hot_size = 20_000
table_size = 480_000
out_dir = 'out/nine_20_480k'
wandb_group = 'nine_20_480k'
