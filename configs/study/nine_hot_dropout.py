# §7.2 explicit regularization of collision-free hot rows: dropout of whole hot rows
include('../nine_100_400k.py')
hot_dropout = 0.1
out_dir = 'out/study/nine_hot_dropout_s0'
wandb_group = 'nine_hot_dropout'
