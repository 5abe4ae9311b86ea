# MD-banded LSH attention (issue 18 part 2, extensions/mdx/attention_lsh.py) on tiny_base: 64-token windows, 8 buckets
# of ~8 keys, 2 hash rounds and an 8-token local window (a trained check of the kernel; its speed is a long-T
# question, measured by bench.py --preset compute)
include('tiny_base.py')
attention = 'lsh'
lsh_bucket_size = 8
lsh_rounds = 2
lsh_window = 8
out_dir = 'out/mdx/attn_lsh_s0'
