# Tiny Hash, iso-parameter with configs/tiny.py's Nine: 2 x 2 x 24,096 x 16 = 2 x (20,000 x 32 + 2 x 4,096 x 16)
include('tiny.py')
memory = 'hash'
table_size = 24_096
out_dir = 'out/tiny_hash'
