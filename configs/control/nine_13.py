# The N_hot ablation at 0.2 (the replica's nine_20_480k): hot 2 x 13 x 32 + cold 2 x 2 x 307 x 16 = hash.py's tables
include('../control_base.py')
memory = 'nine'
hot_size = 13
table_size = 307
out_dir = 'out/control/nine_13'
