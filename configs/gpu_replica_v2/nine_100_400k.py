# v2 Nine-100/400K: N_hot 5,658 (59.4% of train hot); hot 2 x 5,658 x 80 + cold 2 x 2 x 22,632 x 40 = Hash-500K's
include('../gpu_replica_v2_base.py')
memory = 'nine'
hot_size = 5_658
table_size = 22_632
out_dir = 'out/gpu_replica_v2/nine_100_400k'
