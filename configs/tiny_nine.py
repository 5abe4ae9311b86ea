# Tiny Nine (configs/tiny.py) under its own name, beside configs/tiny_hash.py (iso-parameter)
include('tiny.py')
out_dir = 'out/tiny_nine'
