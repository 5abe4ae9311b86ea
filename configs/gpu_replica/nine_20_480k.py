# Replica of Nine-20/480K (N_hot ablation, 0.2 x): hot 2 x 2,400 x 80 + cold 2 x 2 x 57,600 x 40 = 9.6M
include('../gpu_replica_base.py')
memory = 'nine'
hot_size = 2_400
table_size = 57_600
out_dir = 'out/gpu_replica/nine_20_480k'
