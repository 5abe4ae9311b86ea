# Random controlled collisions: 4 hot keys per hot row (by MPHF slot), the reference for the semantic ones
include('../tiny.py')
hot_collision = 4
save_snapshots = True
out_dir = 'out/tiny_study/nine_hot_collide_c4_s0'
