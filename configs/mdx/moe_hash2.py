# SABR with two hashed candidates per token and loss-free load balancing (bias step 1e-3)
include('tiny_base.py')
ffn = 'moe'
moe_experts = 4
moe_router = 'hash'
moe_choices = 2
moe_bias_rate = 1e-3
out_dir = 'out/mdx/moe_hash2_s0'
