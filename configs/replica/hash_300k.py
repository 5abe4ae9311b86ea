# Replica of Hash-300K (0.6x the main table): 2 x 2 x 36,000 x 16
exec(open('configs/replica/hash_500k.py').read())
table_size = 36_000
out_dir = 'out/replica/hash_300k'
