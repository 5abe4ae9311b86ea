# MIHE: 2 MD-mix-hashed tables of 6,288 x 32 (402,432 params), untied head
include('tiny_base.py')
embedding = 'mihe'
embed_tables = 2
embed_buckets = 6288
embed_hash = 'mdmix'
out_dir = 'out/mdx/embed_mihe_s0'
