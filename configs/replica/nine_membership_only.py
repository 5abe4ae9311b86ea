# §7.2 at replica scale: Nine's routing and layout, hot rows indexed by hashing (with collisions), not the MPHF
include('nine_100_400k.py')
hot_index = 'hashed'
out_dir = 'out/replica/nine_membership_only'
