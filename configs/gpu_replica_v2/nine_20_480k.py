# v2 Nine-20/480K: N_hot 1,307 (43.6% of train hot); cold 28,290 - 1,307 per head: Hash-500K's tables
include('../gpu_replica_v2_base.py')
memory = 'nine'
hot_size = 1_307
table_size = 26_983
out_dir = 'out/gpu_replica_v2/nine_20_480k'
