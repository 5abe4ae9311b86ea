# MD-mix ablation (seed "What to measure"): deterministic noise on token embeddings only, on Nine-100/400K.
# sigma ~ half the embedding init std (0.02); cosine to zero over the last 20% of training.
include('nine_100_400k.py')
noise_emb = 0.01
noise_schedule = 'cosine_tail'
out_dir = 'out/mdmix_emb'
wandb_group = 'mdmix_emb'
