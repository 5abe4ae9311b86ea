# Bucket-bounded attention (issue 18 part 4, idea B) on tiny_base: 8 key buckets, a bucket is dropped when its
# Cauchy-Schwarz bound on its output contribution is under 0.01 (a loss measurement, not a speed one)
include('tiny_base.py')
attention = 'bucket'
bucket_count = 8
bucket_tau = 0.01
out_dir = 'out/mdx/attn_bucket_s0'
