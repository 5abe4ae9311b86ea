# The paper's regularization question (§7.2): does explicit noise on Nine's collision-free hot rows
# delay the hot/cold flip the way collisions do in Hash? Gaussian MD-mix noise on the memory vector
# of hot n-grams only (per order), sigma = the tables' init std, constant over training.
include('nine_100_400k.py')
noise_mem = 0.02
noise_mem_scope = 'hot'
out_dir = 'out/nine_100_400k_hotnoise'
wandb_group = 'nine_100_400k_hotnoise'
