# paper config (Table 3)
exec(open('configs/hash_500k.py').read())
out_dir = 'out/study/hash_500k_s0'
wandb_group = 'hash_500k'
