# §7.2 explicit regularization of hot rows: extra decoupled weight decay on the hot tier only
include('../nine_100_400k.py')
hot_weight_decay = 0.1
out_dir = 'out/study/nine_hot_wd_s0'
wandb_group = 'nine_hot_wd'
