# §7.2 in the v2 regime: dropout of whole hot rows
include('nine_100_400k.py')
hot_dropout = 0.1
out_dir = 'out/gpu_replica_v2/nine_hot_dropout'
