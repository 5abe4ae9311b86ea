# Hot-row weight decay from the start (1.0: the paper config's 0.1 does nothing in 200 iters): the reference for nine_hot_wd_ramp
include('../tiny.py')
hot_weight_decay = 1.0
out_dir = 'out/tiny_study/nine_hot_wd_s0'
