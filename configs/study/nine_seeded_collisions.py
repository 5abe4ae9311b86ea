# Seeds and collisions: engram_hash_seed = seed, so each seed draws its own cold-tier collision pattern
include('../nine_100_400k.py')
hash_seed_from_seed = True
out_dir = 'out/study/nine_seeded_collisions_s0'
wandb_group = 'nine_seeded_collisions'
