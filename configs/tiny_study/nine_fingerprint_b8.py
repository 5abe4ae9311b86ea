# Algorithm 1 as written, 8-bit fingerprints (configs/study/nine_fingerprint_b8.py at tiny scale)
include('../tiny.py')
hot_fingerprint_bits = 8
out_dir = 'out/tiny_study/nine_fingerprint_b8_s0'
