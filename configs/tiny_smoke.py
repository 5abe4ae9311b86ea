# a CPU-sized stand-in for trying the study runner: python study.py configs/tiny_smoke.py ... (outside configs/study/, so the glob there matches paper-scale configs only)
include('tiny.py')
out_dir = 'out/study/tiny_smoke_s0'
wandb_group = 'tiny_smoke'
