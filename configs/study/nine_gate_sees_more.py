# §7.2 "enhancing gating input": is_hot flag, log n-gram frequency, per-row collision degree
include('../nine_100_400k.py')
gate_inputs = ('is_hot', 'log_freq', 'collision')
out_dir = 'out/study/nine_gate_sees_more_s0'
wandb_group = 'nine_gate_sees_more'
