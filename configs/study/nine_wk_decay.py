# §7.2 "dynamic calibration": W_K forgets early preferences (multiplicative decay after every step)
include('../nine_100_400k.py')
wk_decay = 1e-3
out_dir = 'out/study/nine_wk_decay_s0'
wandb_group = 'nine_wk_decay'
