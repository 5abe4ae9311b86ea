# paper config (Table 3)
include('../nine_100_400k.py')
out_dir = 'out/study/nine_100_400k_s0'
wandb_group = 'nine_100_400k'
