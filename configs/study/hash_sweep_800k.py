# §5.2 "threshold hypothesis": dense table-size sweep (params scale with the table, not iso)
exec(open('configs/hash_500k.py').read())
table_size = 800_000
out_dir = 'out/study/hash_sweep_800k_s0'
wandb_group = 'hash_sweep_800k'
