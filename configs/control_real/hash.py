# The memory control on the replica's real corpus (issue 47): the control's tiny backbone and schedule on data/replica
# (techdocs, BPE-8192: python -m tools.replica_corpus ... and prepare_fineweb.py as configs/replica_base.py says), the
# replica's tables: Hash 2 x 2 x 60,000 x 16, labels from N_hot 12,000 (58.1% of train hot)
include('../control_base.py')
data_dir = 'data/replica'
val_windows = 256
memory = 'hash'
hot_size = 12_000
table_size = 60_000
out_dir = 'out/control_real/hash'
