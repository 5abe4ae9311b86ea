# paper config (Table 3)
exec(open('configs/nine_50_450k.py').read())
out_dir = 'out/study/nine_50_450k_s0'
wandb_group = 'nine_50_450k'
