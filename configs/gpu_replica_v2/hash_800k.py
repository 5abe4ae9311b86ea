# v2 Hash-800K (the table pair): 1.6 x Hash-500K
include('../gpu_replica_v2_base.py')
memory = 'hash'
hot_size = 5_658
table_size = 45_264
out_dir = 'out/gpu_replica_v2/hash_800k'
