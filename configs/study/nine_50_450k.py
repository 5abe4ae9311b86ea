# paper config (Table 3)
include('../nine_50_450k.py')
out_dir = 'out/study/nine_50_450k_s0'
wandb_group = 'nine_50_450k'
