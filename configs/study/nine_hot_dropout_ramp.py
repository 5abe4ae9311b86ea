# §7.2 progressive hot regularization: hot-row dropout grows from 0 to 0.1 over the first 2500 iters
include('../nine_100_400k.py')
hot_dropout = 0.1
hot_reg_ramp_iters = 2500
out_dir = 'out/study/nine_hot_dropout_ramp_s0'
wandb_group = 'nine_hot_dropout_ramp'
