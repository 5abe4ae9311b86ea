# Semantically controlled collisions: 4 hot keys per hot row, grouped by their most likely next tokens
include('../tiny.py')
hot_collision = 4
hot_collision_mode = 'semantic'
out_dir = 'out/tiny_study/nine_hot_collide_c4_semantic_s0'
