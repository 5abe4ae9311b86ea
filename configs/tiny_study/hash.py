# Issue 20 at tiny scale: the iso-parameter Hash reference (configs/tiny_hash.py)
exec(open('configs/tiny_hash.py').read())
out_dir = 'out/tiny_study/hash_s0'
