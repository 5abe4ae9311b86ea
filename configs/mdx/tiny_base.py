# The reference for the MD-mix model parts (issue 17): configs/tiny.py's backbone without Engram memory
# (memory='none', so each part is compared alone), tied embedding, dense MLP. Tiny Shakespeare, 200 iters.
include('../tiny.py')
memory = 'none'
out_dir = 'out/mdx/tiny_base_s0'
