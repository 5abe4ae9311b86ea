# Tiny Nine on Tiny Shakespeare, a CPU run of about 70 s (2 cores). Prepare the data once with:
#   python prepare_fineweb.py --source assets/tinyshakespeare.txt --tokenizer gpt2 --out data/shakespeare
# then: python train.py configs/tiny.py (Nine) or configs/tiny_hash.py (Hash, iso-parameter)
data_dir = 'data/shakespeare'
out_dir = 'out/tiny'
memory = 'nine'
n_layer = 8                 # keeps the paper's Engram layers 2, 4, 6
n_head = 4
n_embd = 64
block_size = 64
batch_size = 8
gradient_accumulation_steps = 1
hot_size = 20_000
table_size = 4_096
engram_head_dim = 16
max_iters = 200
lr_decay_iters = 200
warmup_iters = 20
learning_rate = 3e-3
min_lr = 3e-4
eval_interval = 25
val_windows = 64
eval_batch_size = 32
log_interval = 10
device = 'cpu'
dtype = 'float32'
compile = False
