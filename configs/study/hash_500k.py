# paper config (Table 3)
include('../hash_500k.py')
out_dir = 'out/study/hash_500k_s0'
wandb_group = 'hash_500k'
