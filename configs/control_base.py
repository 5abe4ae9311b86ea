# The positive control of the flip study (issue 47, docs/controls.md): a corpus with a planted flip, at tiny CPU shapes.
# Data (seconds, offline; the prediction of the data is printed and kept in data/control_flip/planted.json):
#   python planted.py --preset flip --out data/control_flip
#   python planted.py --preset none --out data/control_none      # the control without a flip (configs/control/none_*.py)
# Then: python study.py configs/control/*.py --seeds=0,1,2,3 --jobs=2 --out=out/control --report=reports/control
# The replica's regime (configs/replica_base.py), at the corpus's size:
#   epochs: 224 iters x 8 x 64 = 114,688 tokens of 133,365 train = 0.86 (paper 0.86)
#   schedule: warmup 5 = 2% of iters, cosine to lr/10, eval every 11 iters = 5%
#   hot coverage of train 57.7% at N_hot = 64 = every frequent 2-gram (paper 59%); hot share of the tables 20%;
#   iso-parameter exact: Nine 2 x 64 x 32 + 2 x 2 x 256 x 16 = Hash 2 x 2 x 320 x 16 = 20,480 table parameters
data_dir = 'data/control_flip'
out_dir = 'out/control/base'
n_layer = 8                 # the paper's Engram layers 2, 4, 6 (configs/tiny.py's backbone)
n_head = 4
n_embd = 64
engram_head_dim = 16
block_size = 64
batch_size = 8
gradient_accumulation_steps = 1
max_iters = 224
lr_decay_iters = 224
warmup_iters = 5
learning_rate = 3e-3
min_lr = 3e-4
eval_interval = 11
val_windows = 64
eval_batch_size = 32
log_interval = 11
ckpt_interval = 0
device = 'cpu'
dtype = 'float32'
compile = False
