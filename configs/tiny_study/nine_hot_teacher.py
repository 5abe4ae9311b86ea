# Hot reads teach the cold rows of the same n-grams
exec(open('configs/tiny.py').read())
hot_teacher = 1.0
out_dir = 'out/tiny_study/nine_hot_teacher_s0'
