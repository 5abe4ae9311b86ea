# The backbone without memory on the planted flip (its hot/cold labels: N_hot 64's)
include('../control_base.py')
memory = 'none'
hot_size = 64
out_dir = 'out/control/baseline'
