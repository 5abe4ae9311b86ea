# Nine on the replica's real corpus: hot 2 x 12,000 x 32 + cold 2 x 2 x 48,000 x 16 = hash.py's tables
include('hash.py')
memory = 'nine'
table_size = 48_000
out_dir = 'out/control_real/nine'
