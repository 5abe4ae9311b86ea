# Reversible coupling blocks (issue 18 part 1, extensions/mdx/reversible.py) on the parts' reference backbone: the same
# parameters as tiny_base, activations recomputed in backward instead of stored
include('tiny_base.py')
block = 'reversible'
out_dir = 'out/mdx/rev_base_s0'
