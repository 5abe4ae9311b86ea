# Count-Sketch LoRA (MD-mix idea 5) at the same trainable parameters as configs/mdx/lora_finetune.py:
# the rank-8 factors are read from two shared pools through MD-mix indices and Rademacher signs.
include('lora_finetune.py')
out_dir = 'out/mdx/cslora_finetune'
wandb_group = 'cslora_finetune'
adapter = 'cslora'
adapter_pool = 0              # = LoRA's count at rank 8
