# §5.2 "threshold hypothesis": dense table-size sweep (params scale with the table, not iso)
include('../hash_500k.py')
table_size = 200_000
out_dir = 'out/study/hash_sweep_200k_s0'
wandb_group = 'hash_sweep_200k'
