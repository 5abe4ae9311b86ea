# §7.2 (4) gate credit assignment: penalize alpha where the memory read does not lower the loss (variants.gate_credit_loss)
include('../nine_100_400k.py')
gate_credit = 0.1
out_dir = 'out/study/nine_gate_credit_s0'
wandb_group = 'nine_gate_credit'
