# engram_hash_seed = seed: each seed its own cold-tier collision pattern
include('../tiny.py')
hash_seed_from_seed = True
out_dir = 'out/tiny_study/nine_seeded_collisions_s0'
