# SABR with a frequency-balanced token -> expert assignment from the train unigram counts
include('tiny_base.py')
ffn = 'moe'
moe_experts = 4
moe_router = 'balanced'
out_dir = 'out/mdx/moe_balanced_s0'
