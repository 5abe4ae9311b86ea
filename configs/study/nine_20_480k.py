# paper config (Table 3)
include('../nine_20_480k.py')
out_dir = 'out/study/nine_20_480k_s0'
wandb_group = 'nine_20_480k'
