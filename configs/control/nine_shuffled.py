# A memory that cannot memorize: nine.py with every read a random row (memory_reads='shuffled'): same parameters,
# gate, rows read per position and labels; no row belongs to an n-gram. Does the flip need the memory?
include('nine.py')
memory_reads = 'shuffled'
out_dir = 'out/control/nine_shuffled'
