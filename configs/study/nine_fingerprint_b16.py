# Algorithm 1 as written: hot membership by a 16-bit fingerprint (about 1/65536 of non-member queries pass)
include('../nine_100_400k.py')
hot_fingerprint_bits = 16
out_dir = 'out/study/nine_fingerprint_b16_s0'
wandb_group = 'nine_fingerprint_b16'
