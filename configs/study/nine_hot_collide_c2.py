# §5.2 controlled collisions: the 100K hot keys share 100K/2 hot rows (about 2 keys per row), MPHF-routed
include('../nine_100_400k.py')
hot_collision = 2
out_dir = 'out/study/nine_hot_collide_c2_s0'
wandb_group = 'nine_hot_collide_c2'
