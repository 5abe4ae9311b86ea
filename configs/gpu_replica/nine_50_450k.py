# Replica of Nine-50/450K (N_hot ablation, 0.5 x): hot 2 x 6,000 x 80 + cold 2 x 2 x 54,000 x 40 = 9.6M
include('../gpu_replica_base.py')
memory = 'nine'
hot_size = 6_000
table_size = 54_000
out_dir = 'out/gpu_replica/nine_50_450k'
