# §6.2/§7.2 (2) semantically controlled collisions: rows shared by hot keys with the same likely next tokens (vs nine_hot_collide_c4: random)
include('../nine_100_400k.py')
hot_collision = 4
hot_collision_mode = 'semantic'
out_dir = 'out/study/nine_hot_collide_c4_semantic_s0'
wandb_group = 'nine_hot_collide_c4_semantic'
