# MD-mix ablation: noise on attention queries and keys only (every layer), on Nine-100/400K.
include('nine_100_400k.py')
noise_qk = 0.05
noise_schedule = 'cosine_tail'
out_dir = 'out/mdmix_attn'
wandb_group = 'mdmix_attn'
