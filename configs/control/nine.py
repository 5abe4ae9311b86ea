# Nine on the planted flip: hot 2 x 64 x 32 + cold 2 x 2 x 256 x 16 = hash.py's tables
include('../control_base.py')
memory = 'nine'
hot_size = 64
table_size = 256
out_dir = 'out/control/nine'
