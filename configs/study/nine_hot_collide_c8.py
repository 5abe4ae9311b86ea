# §5.2 controlled collisions: the 100K hot keys share 100K/8 hot rows (about 8 keys per row), MPHF-routed
include('../nine_100_400k.py')
hot_collision = 8
out_dir = 'out/study/nine_hot_collide_c8_s0'
wandb_group = 'nine_hot_collide_c8'
