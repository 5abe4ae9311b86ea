# The positive control of the flip study (issue 47, docs/controls.md): a corpus with a planted flip, at tiny CPU shapes.
# Data (seconds, offline; the prediction of the data is printed and kept in data/control_flip/planted.json):
#   python -m tools.planted --preset flip --out data/control_flip
#   python -m tools.planted --preset none --out data/control_none      # the control without a flip (configs/control_none/)
# Then: python study.py configs/control/*.py --seeds=0,1,2,3 --jobs=2 --out=out/control --report=reports/control
# The replica's regime (configs/replica_base.py) in everything but the epochs:
#   schedule: warmup 18 = 2% of iters, cosine to lr/10, eval every 45 iters = 5%
#   hot coverage of train 57.7% at N_hot = 64 = every frequent 2-gram (paper 59%); hot share of the tables 20%;
#   iso-parameter exact: Nine 2 x 64 x 32 + 2 x 2 x 256 x 16 = Hash 2 x 2 x 320 x 16 = 20,480 table parameters
#   epochs: 896 iters x 8 x 64 = 459K tokens of 133,563 train = 3.4 (the paper's 0.86 is 224 iters here: too few
#   steps for any model to learn a rare phrase, LOG.md 2026-12-07)
data_dir = 'data/control_flip'
out_dir = 'out/control/base'
n_layer = 8                 # the paper's Engram layers 2, 4, 6 (configs/tiny.py's backbone)
n_head = 4
n_embd = 64
engram_head_dim = 16
block_size = 64
batch_size = 8
gradient_accumulation_steps = 1
max_iters = 896
lr_decay_iters = 896
warmup_iters = 18
learning_rate = 3e-3
min_lr = 3e-4
eval_interval = 45
val_windows = 64
eval_batch_size = 32
log_interval = 45
ckpt_interval = 0
device = 'cpu'
dtype = 'float32'
compile = False
