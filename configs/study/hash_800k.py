# paper config (Table 3)
exec(open('configs/hash_800k.py').read())
out_dir = 'out/study/hash_800k_s0'
wandb_group = 'hash_800k'
