# Algorithm 1 as written, 16-bit fingerprints
include('../tiny.py')
hot_fingerprint_bits = 16
out_dir = 'out/tiny_study/nine_fingerprint_b16_s0'
