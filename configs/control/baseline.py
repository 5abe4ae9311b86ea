# The backbone without memory on the planted flip (its hot/cold labels: N_hot 144's)
include('base.py')
memory = 'none'
hot_size = 144
out_dir = 'out/control/baseline'
