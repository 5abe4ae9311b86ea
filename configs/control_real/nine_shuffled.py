# A memory that cannot memorize on the replica's real corpus: nine.py, every read a random row
include('nine.py')
memory_reads = 'shuffled'
out_dir = 'out/control_real/nine_shuffled'
