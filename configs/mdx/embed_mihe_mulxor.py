# MIHE with the Engram multiply-xor hash instead of MD-mix (isolates the mixer), otherwise configs/mdx/embed_mihe.py
include('embed_mihe.py')
embed_hash = 'mulxor'
out_dir = 'out/mdx/embed_mihe_mulxor_s0'
