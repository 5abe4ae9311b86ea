# the same gate inputs on the collision-prone Hash-500K (is_hot is the post-hoc N_hot=100K label)
include('../hash_500k.py')
gate_inputs = ('is_hot', 'log_freq', 'collision')
out_dir = 'out/study/hash_gate_sees_more_s0'
wandb_group = 'hash_gate_sees_more'
