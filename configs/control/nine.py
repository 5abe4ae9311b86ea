# Nine on the planted flip: hot 2 x 144 x 32 + cold 2 x 2 x 576 x 16 = hash.py's tables
include('base.py')
memory = 'nine'
hot_size = 144
table_size = 576
out_dir = 'out/control/nine'
