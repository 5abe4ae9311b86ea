# Learned top-1 (Switch) router at equal total parameters (+ the router), loss-free load balancing (bias step 1e-3)
include('tiny_base.py')
ffn = 'moe'
moe_experts = 4
moe_router = 'switch'
moe_bias_rate = 1e-3
out_dir = 'out/mdx/moe_switch_s0'
