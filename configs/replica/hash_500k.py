# Replica of Hash-500K: 2 x 2 x 60,000 x 16 = 3.84M table parameters (hot/cold labels from N_hot = 12,000)
include('../replica_base.py')
memory = 'hash'
hot_size = 12_000
table_size = 60_000
out_dir = 'out/replica/hash_500k'
