# §7.2 "tiered architecture vs collision-free indexing": Nine's routing and parameter layout, but the hot
# rows are indexed by K multi-head hashes (with collisions) instead of the MPHF slot.
include('../nine_100_400k.py')
hot_index = 'hashed'
out_dir = 'out/study/nine_membership_only_s0'
wandb_group = 'nine_membership_only'
