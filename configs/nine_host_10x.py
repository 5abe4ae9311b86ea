# Issue 39's scale: 10x the paper's table budget with the tables in host memory (engramlib/offload.py).
# hot 2 x 100K x 128 = 25.6M + cold 2 x 2 x 4.9M x 64 = 1,254.4M = 1.28B table parameters: 5.1 GB of fp32 weights,
# 15.4 GB with the row-wise AdamW moments, all in host memory; the GPU holds each step's rows only.
include('nine_100_400k.py')
table_size = 4_900_000
engram_tables = 'host'
table_optimizer = 'rowwise'        # host tables update the rows each step reads
out_dir = 'out/nine_host_10x'
wandb_group = 'nine_host_10x'
