# MD-mix ablation: noise on the pre-softmax logits only, on Nine-100/400K.
include('nine_100_400k.py')
noise_logits = 0.1
noise_schedule = 'cosine_tail'
out_dir = 'out/mdmix_logits'
wandb_group = 'mdmix_logits'
