# paper config (Table 3)
exec(open('configs/nine_100_400k.py').read())
out_dir = 'out/study/nine_100_400k_s0'
wandb_group = 'nine_100_400k'
