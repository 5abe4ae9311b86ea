# v2 Nine-50/450K: N_hot 3,307 (53.4% of train hot); cold 28,290 - 3,307 per head: Hash-500K's tables
include('../gpu_replica_v2_base.py')
memory = 'nine'
hot_size = 3_307
table_size = 24_983
out_dir = 'out/gpu_replica_v2/nine_50_450k'
