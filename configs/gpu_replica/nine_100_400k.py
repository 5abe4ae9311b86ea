# Replica of Nine-100/400K: hot 2 x 12,000 x 80 + cold 2 x 2 x 48,000 x 40 = 9.6M = Hash-500K's tables
include('../gpu_replica_base.py')
memory = 'nine'
hot_size = 12_000
table_size = 48_000
out_dir = 'out/gpu_replica/nine_100_400k'
