# Algorithm 1 as written, 16-bit fingerprints
exec(open('configs/tiny.py').read())
hot_fingerprint_bits = 16
out_dir = 'out/tiny_study/nine_fingerprint_b16_s0'
