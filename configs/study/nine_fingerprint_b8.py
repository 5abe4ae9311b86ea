# Algorithm 1 as written: hot membership by an 8-bit fingerprint (about 1/256 of non-member queries pass, routed hot)
include('../nine_100_400k.py')
hot_fingerprint_bits = 8
out_dir = 'out/study/nine_fingerprint_b8_s0'
wandb_group = 'nine_fingerprint_b8'
