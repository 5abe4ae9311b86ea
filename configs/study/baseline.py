# paper config (Table 3)
exec(open('configs/baseline.py').read())
out_dir = 'out/study/baseline_s0'
wandb_group = 'baseline'
