# Hot-row dropout growing from 0 to 0.1 over the first 100 of 200 iters
include('../tiny.py')
hot_dropout = 0.1
hot_reg_ramp_iters = 100
out_dir = 'out/tiny_study/nine_hot_dropout_ramp_s0'
