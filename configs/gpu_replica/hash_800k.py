# Replica of Hash-800K (the table pair): 2 x 2 x 96,000 x 40 = 15.36M (1.6 x Hash-500K, as the paper's 800K)
include('../gpu_replica_base.py')
memory = 'hash'
hot_size = 12_000
table_size = 96_000
out_dir = 'out/gpu_replica/hash_800k'
