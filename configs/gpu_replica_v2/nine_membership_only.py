# §7.2 in the v2 regime: Nine's routing and layout, hot rows indexed by hashing (with collisions)
include('nine_100_400k.py')
hot_index = 'hashed'
out_dir = 'out/gpu_replica_v2/nine_membership_only'
