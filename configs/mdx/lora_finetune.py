# Fine-tune tiny Hash (bash quickstart.sh makes it) on another corpus with plain LoRA adapters (rank 8 on
# attn.c_attn and mlp.c_fc of every block; only the adapters train). Prepare the target corpus first, with
# the base model's tokenizer:  python prepare_fineweb.py --source 'corpus/*.txt' --tokenizer gpt2 --out data/finetune
include('../tiny_hash.py')
init_from = 'out/quickstart/tiny_hash_s0/ckpt.pt'
data_dir = 'data/finetune'
out_dir = 'out/mdx/lora_finetune'
wandb_group = 'lora_finetune'
adapter = 'lora'
adapter_rank = 8
max_iters = 200
lr_decay_iters = 200
warmup_iters = 10
