# SABR: 4 experts (each the dense MLP: equal active parameters), routed by an MD-mix hash of the token id
include('tiny_base.py')
ffn = 'moe'
moe_experts = 4
moe_router = 'hash'
out_dir = 'out/mdx/moe_hash_s0'
