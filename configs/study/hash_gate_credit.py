# §7.2 (4) gate credit assignment on Hash (the same loss; Hash has no hot tier)
include('../hash_500k.py')
gate_credit = 0.1
out_dir = 'out/study/hash_gate_credit_s0'
wandb_group = 'hash_gate_credit'
