# Hash on the planted flip: 2 x 2 x 320 x 16 table parameters, iso-parameter with nine.py (hot/cold labels from N_hot 64)
include('../control_base.py')
memory = 'hash'
hot_size = 64
table_size = 320
out_dir = 'out/control/hash'
