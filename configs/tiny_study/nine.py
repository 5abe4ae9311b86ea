# Issue 20 at tiny scale (Tiny Shakespeare, 200 iters, CPU): the reference Nine, with weight snapshots for the n-gram trajectories
include('../tiny.py')
save_snapshots = True
out_dir = 'out/tiny_study/nine_s0'
