# layer ablation on Hash-500K
exec(open('configs/hash_500k.py').read())
engram_layers = (2, 4)
out_dir = 'out/study/hash_layers_2_4_s0'
wandb_group = 'hash_layers_2_4'
