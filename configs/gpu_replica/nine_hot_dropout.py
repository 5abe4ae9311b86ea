# §7.2 at GPU-replica scale: explicit regularization of the collision-free hot rows (dropout of whole rows)
exec(open('configs/gpu_replica/nine_100_400k.py').read())
hot_dropout = 0.1
out_dir = 'out/gpu_replica/nine_hot_dropout'
