# The N_hot ablation at 0.2 (the replica's nine_20_480k): hot 2 x 29 x 32 + cold 2 x 2 x 691 x 16 = hash.py's tables
include('base.py')
memory = 'nine'
hot_size = 29
table_size = 691
out_dir = 'out/control/nine_29'
