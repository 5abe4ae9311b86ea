# MIHE with the Engram multiply-xor hash instead of MD-mix (isolates the mixer)
exec(open('configs/mdx/tiny_base.py').read())
embedding = 'mihe'
embed_tables = 2
embed_buckets = 6288
embed_hash = 'mulxor'
out_dir = 'out/mdx/embed_mihe_mulxor_s0'
