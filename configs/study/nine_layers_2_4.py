# §5.5 / §7.2 layer ablation: Engram at layers 2 and 4 only (the deep layer 6 showed alpha reversal)
include('../nine_100_400k.py')
engram_layers = (2, 4)
out_dir = 'out/study/nine_layers_2_4_s0'
wandb_group = 'nine_layers_2_4'
