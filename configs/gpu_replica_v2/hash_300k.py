# v2 Hash-300K (the table pair): 0.6 x Hash-500K
include('../gpu_replica_v2_base.py')
memory = 'hash'
hot_size = 5_658
table_size = 16_974
out_dir = 'out/gpu_replica_v2/hash_300k'
