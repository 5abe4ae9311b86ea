# layer ablation on Hash-500K
include('../hash_500k.py')
engram_layers = (2, 4)
out_dir = 'out/study/hash_layers_2_4_s0'
wandb_group = 'hash_layers_2_4'
