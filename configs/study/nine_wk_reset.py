# §7.2 "periodic reset of gating parameters": re-initialize W_K every 1000 iters
include('../nine_100_400k.py')
wk_reset_interval = 1000
out_dir = 'out/study/nine_wk_reset_s0'
wandb_group = 'nine_wk_reset'
