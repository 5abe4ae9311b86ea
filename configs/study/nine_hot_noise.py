# §7.2 explicit regularization of hot rows: MD-mix Gaussian noise on hot rows only
include('../nine_100_400k_hotnoise.py')
out_dir = 'out/study/nine_hot_noise_s0'
wandb_group = 'nine_hot_noise'
