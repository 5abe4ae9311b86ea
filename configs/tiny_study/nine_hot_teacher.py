# Hot reads teach the cold rows of the same n-grams
include('../tiny.py')
hot_teacher = 1.0
out_dir = 'out/tiny_study/nine_hot_teacher_s0'
