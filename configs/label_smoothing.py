# MD-mix ablation baseline: label smoothing 0.1 (Vaswani et al.), no noise, on Nine-100/400K.
include('nine_100_400k.py')
label_smoothing = 0.1
out_dir = 'out/label_smoothing'
wandb_group = 'label_smoothing'
