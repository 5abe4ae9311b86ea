# Sketch-pruned attention (issue 18 part 3, idea A) on tiny_base: width-4 CountSketch, pairs more than 2 below
# the row's best sketched score skipped (every score is still computed: a loss measurement, not a speed one)
include('tiny_base.py')
attention = 'sketch'
sketch_width = 4
sketch_tau = 2.0
out_dir = 'out/mdx/attn_sketch_s0'
