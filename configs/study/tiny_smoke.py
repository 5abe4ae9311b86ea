# a CPU-sized stand-in for trying the study runner: python study.py configs/study/tiny_smoke.py ...
exec(open('configs/tiny.py').read())
out_dir = 'out/study/tiny_smoke_s0'
wandb_group = 'tiny_smoke'
