# Issue 39's question at tiny scale: the row-wise (lazy) table AdamW that host-resident tables would need, against
# tiny_study/nine.py's dense AdamW (the paper's); the same model, data and seeds
include('nine.py')
table_optimizer = 'rowwise'
out_dir = 'out/tiny_study/nine_rowwise_s0'
