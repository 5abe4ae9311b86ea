# per-layer hot/cold strategy: layers 2 and 4 read the hot tier, layer 6 reads only the hashed cold path
include('../nine_100_400k.py')
hot_layers = (2, 4)
out_dir = 'out/study/nine_hot_layers_2_4_s0'
wandb_group = 'nine_hot_layers_2_4'
