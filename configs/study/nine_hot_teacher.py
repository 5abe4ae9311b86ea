# §7.2 dynamic training: hot reads teach the cold rows of the same n-grams (variants.hot_teacher_loss)
include('../nine_100_400k.py')
hot_teacher = 1.0
out_dir = 'out/study/nine_hot_teacher_s0'
wandb_group = 'nine_hot_teacher'
