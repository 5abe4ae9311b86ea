# Product-key memory in blocks 2, 4, 6 (Engram's layers), MD-mix-seeded sub-keys; 3 x 90^2 x 64 = 1,555,200 value parameters vs tiny Nine's 1,542,144 table parameters (configs/tiny_study/nine.py)
include('tiny_base.py')
ffn = 'pkm'
pkm_layers = (2, 4, 6)
pkm_keys = 'seeded'
pkm_subkeys = 90
pkm_key_dim = 32
pkm_topk = 8
out_dir = 'out/mdx/pkm_seeded_s0'
