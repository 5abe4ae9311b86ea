# v2 Hash-500K: 2 x 2 x 28,290 x 40 (5 x N_hot: the hot tier's 20% share in the Nine configs)
include('../gpu_replica_v2_base.py')
memory = 'hash'
hot_size = 5_658
table_size = 28_290
out_dir = 'out/gpu_replica_v2/hash_500k'
