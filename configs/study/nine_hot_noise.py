# §7.2 explicit regularization of hot rows: MD-mix Gaussian noise on hot rows only
exec(open('configs/nine_100_400k_hotnoise.py').read())
out_dir = 'out/study/nine_hot_noise_s0'
wandb_group = 'nine_hot_noise'
