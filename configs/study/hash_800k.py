# paper config (Table 3)
include('../hash_800k.py')
out_dir = 'out/study/hash_800k_s0'
wandb_group = 'hash_800k'
