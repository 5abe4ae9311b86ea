# Low-rank token embedding, rank 8 (402,944 params), untied head: equal parameters with embed_mihe*
include('tiny_base.py')
embedding = 'lowrank'
embed_rank = 8
out_dir = 'out/mdx/embed_lowrank_s0'
