# Issue 20 at tiny scale: the iso-parameter Hash reference (configs/tiny_hash.py)
include('../tiny_hash.py')
out_dir = 'out/tiny_study/hash_s0'
