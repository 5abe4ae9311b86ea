# §6.3 "W_K intervention": separate W_K^hot and W_K^cold
include('../nine_100_400k.py')
gate_keys = 'decoupled'
out_dir = 'out/study/nine_decoupled_wk_s0'
wandb_group = 'nine_decoupled_wk'
