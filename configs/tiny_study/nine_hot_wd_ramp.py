# Hot-row weight decay growing from 0 to 1.0 over the first 100 of 200 iters
include('../tiny.py')
hot_weight_decay = 1.0
hot_reg_ramp_iters = 100
out_dir = 'out/tiny_study/nine_hot_wd_ramp_s0'
