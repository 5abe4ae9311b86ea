# Reversible coupling blocks with Engram Nine memory (configs/tiny.py): the gated memory enters F before attention
include('../tiny.py')
block = 'reversible'
out_dir = 'out/mdx/rev_nine_s0'
