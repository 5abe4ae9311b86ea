# Replica of Nine-50/450K (N_hot 0.5x the main one): hot 2 x 6,000 x 32 + cold 2 x 2 x 54,000 x 16 = 3.84M
include('nine_100_400k.py')
hot_size = 6_000
table_size = 54_000
out_dir = 'out/replica/nine_50_450k'
