# Replica of Hash-300K (the table pair): 2 x 2 x 36,000 x 40 = 5.76M (0.6 x Hash-500K, as the paper's 300K)
include('../gpu_replica_base.py')
memory = 'hash'
hot_size = 12_000
table_size = 36_000
out_dir = 'out/gpu_replica/hash_300k'
