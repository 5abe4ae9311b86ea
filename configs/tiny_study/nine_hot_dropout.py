# Hot-row dropout 0.1 from the start: the reference for nine_hot_dropout_ramp
include('../tiny.py')
hot_dropout = 0.1
out_dir = 'out/tiny_study/nine_hot_dropout_s0'
