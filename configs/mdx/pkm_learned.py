# Product-key memory as in Lample et al. (learned sub-keys, starting from the seeded codes), otherwise configs/mdx/pkm_seeded.py
include('pkm_seeded.py')
pkm_keys = 'learned'
out_dir = 'out/mdx/pkm_learned_s0'
