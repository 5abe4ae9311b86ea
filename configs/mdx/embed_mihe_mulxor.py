# MIHE with the Engram multiply-xor hash instead of MD-mix (isolates the mixer), otherwise configs/mdx/embed_mihe.py
exec(open('configs/mdx/embed_mihe.py').read())
embed_hash = 'mulxor'
out_dir = 'out/mdx/embed_mihe_mulxor_s0'
