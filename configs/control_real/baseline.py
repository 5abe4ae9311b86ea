# The backbone without memory on the replica's real corpus (labels: N_hot 12,000)
include('hash.py')
memory = 'none'
out_dir = 'out/control_real/baseline'
