# Reference for the adapter fine-tunes: the base model (tiny Hash from quickstart) evaluated on the target
# corpus without any training.
include('lora_finetune.py')
out_dir = 'out/mdx/base_on_finetune'
wandb_group = 'base_on_finetune'
adapter = 'none'
eval_only = True
