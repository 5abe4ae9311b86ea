# Learned seeds (the notes' differentiable seeding): MIHE with 4 candidate MD-mix seeds per table, chosen by straight-through logits
include('embed_mihe.py')
embed_seed_choices = 4
out_dir = 'out/mdx/embed_mihe_learned_seeds_s0'
