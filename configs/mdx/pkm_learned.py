# Product-key memory as in Lample et al. (learned sub-keys), otherwise configs/mdx/pkm_seeded.py
exec(open('configs/mdx/tiny_base.py').read())
ffn = 'pkm'
pkm_layers = (2, 4, 6)
pkm_keys = 'learned'
pkm_subkeys = 90
pkm_key_dim = 32
pkm_topk = 8
out_dir = 'out/mdx/pkm_learned_s0'
