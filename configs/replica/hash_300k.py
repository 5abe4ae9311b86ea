# Replica of Hash-300K (0.6x the main table): 2 x 2 x 36,000 x 16 = 2.30M, built as named like configs/hash_300k.py (not iso-parameter)
include('hash_500k.py')
table_size = 36_000
out_dir = 'out/replica/hash_300k'
