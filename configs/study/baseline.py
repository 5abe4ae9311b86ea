# paper config (Table 3)
include('../baseline.py')
out_dir = 'out/study/baseline_s0'
wandb_group = 'baseline'
