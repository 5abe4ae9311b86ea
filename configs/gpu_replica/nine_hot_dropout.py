# §7.2 at GPU-replica scale: explicit regularization of the collision-free hot rows (dropout of whole rows)
include('nine_100_400k.py')
hot_dropout = 0.1
out_dir = 'out/gpu_replica/nine_hot_dropout'
