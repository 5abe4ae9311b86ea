# Count-Sketch LoRA with half of LoRA's trainable parameters (the sketch decouples size from rank)
include('cslora_finetune.py')
out_dir = 'out/mdx/cslora_half_finetune'
wandb_group = 'cslora_half_finetune'
adapter_pool = 18_432         # rank-8 LoRA on tiny: 8 blocks x 8 x ((64 + 192) + (64 + 256)) = 36,864
