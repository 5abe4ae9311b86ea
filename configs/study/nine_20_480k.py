# paper config (Table 3)
exec(open('configs/nine_20_480k.py').read())
out_dir = 'out/study/nine_20_480k_s0'
wandb_group = 'nine_20_480k'
