# paper config (Table 3)
include('../hash_300k.py')
out_dir = 'out/study/hash_300k_s0'
wandb_group = 'hash_300k'
