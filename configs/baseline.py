# GPT-2 small without Engram memory. is_hot labels still come from the N_hot=100K hot tier,
# so its hot/cold losses are comparable with every memory config.
memory = 'none'
out_dir = 'out/baseline'
wandb_group = 'baseline'
