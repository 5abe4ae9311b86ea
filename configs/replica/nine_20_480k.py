# Replica of Nine-20/480K (N_hot 0.2x the main one): hot 2 x 2,400 x 32 + cold 2 x 2 x 57,600 x 16 = 3.84M
include('nine_100_400k.py')
hot_size = 2_400
table_size = 57_600
out_dir = 'out/replica/nine_20_480k'
