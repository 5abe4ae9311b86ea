# paper config (Table 3)
exec(open('configs/hash_300k.py').read())
out_dir = 'out/study/hash_300k_s0'
wandb_group = 'hash_300k'
