# The N_hot ablation at 0.5 (the replica's nine_50_450k): hot 2 x 32 x 32 + cold 2 x 2 x 288 x 16 = hash.py's tables
include('../control_base.py')
memory = 'nine'
hot_size = 32
table_size = 288
out_dir = 'out/control/nine_32'
