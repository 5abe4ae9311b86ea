# Hash on the planted flip: 2 x 2 x 720 x 16 table parameters, iso-parameter with nine.py (hot/cold labels from N_hot 144)
include('base.py')
memory = 'hash'
hot_size = 144
table_size = 720
out_dir = 'out/control/hash'
