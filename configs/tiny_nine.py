# Tiny Nine (configs/tiny.py) under its own name, beside configs/tiny_hash.py (iso-parameter)
exec(open('configs/tiny.py').read())
out_dir = 'out/tiny_nine'
