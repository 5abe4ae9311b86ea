# §7.2 dynamic training: the hot tier phases in; hot n-grams read their cold rows at first, their hot row after 1000 iters
include('../nine_100_400k.py')
hot_ramp_iters = 1000
out_dir = 'out/study/nine_hot_phase_in_s0'
wandb_group = 'nine_hot_phase_in'
