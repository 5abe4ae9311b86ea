# Replica of Hash-800K (1.6x the main table): 2 x 2 x 96,000 x 16 = 6.14M, built as named like configs/hash_800k.py (not iso-parameter)
include('hash_500k.py')
table_size = 96_000
out_dir = 'out/replica/hash_800k'
