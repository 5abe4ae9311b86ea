# The N_hot ablation at 0.5 (the replica's nine_50_450k): hot 2 x 72 x 32 + cold 2 x 2 x 648 x 16 = hash.py's tables
include('base.py')
memory = 'nine'
hot_size = 72
table_size = 648
out_dir = 'out/control/nine_72'
