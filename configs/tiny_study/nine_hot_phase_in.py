# Phased hot tier: hot reads blend in from their cold read over the first 40 of 200 iters (1000 of 5000 in configs/study)
include('../tiny.py')
hot_ramp_iters = 40
out_dir = 'out/tiny_study/nine_hot_phase_in_s0'
