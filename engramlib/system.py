"""The machine a run uses, resolved in one place: 'auto' device and dtype, mixed precision, the device's peak FLOPs,
how the model is compiled."""
import os
from contextlib import nullcontext

import torch

PEAK_FLOPS = {'H200': 989e12, 'H100': 989e12, 'A100': 312e12, 'L40S': 362e12, 'L4': 121e12,
              'A10': 125e12, '4090': 165e12, '3090': 71e12, 'V100': 125e12}   # dense bf16/fp16 tensor-core peaks

def autocast_context(device_type, dtype):
    """Mixed precision as training runs it: bf16/fp16 autocast (CPU too, so CPU tests see the dtype
    mixes a GPU run sees), or nothing for float32."""
    if dtype in ('float32', torch.float32):
        return nullcontext()
    return torch.autocast(device_type, dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype)

# One agreement rule for two evals of the same weights on the same windows: the train-time eval (compiled on CUDA) and
# the --ckpt eval (eager). In bf16, kernel fusion reorders roundings: on an H200, 8e-5 at paper shapes (14 windows of
# 1024) and 3.3e-4 at the tests' micro shapes (16 windows of 32: fewer positions average out less); in float32 on a
# CPU both run the same kernels and agree exactly.
EVAL_AGREEMENT_ATOL = {'bfloat16': 1e-3, 'float32': 1e-6}

def make_deterministic():
    """Bit-reproducible kernels, so a resumed CUDA run equals the uninterrupted one: cuBLAS's fixed workspace (read
    when its first handle is made: call this before any matmul), torch's deterministic algorithms (scatter/index_add
    and the embedding backward take their sorted paths; inductor follows the same flag; an op with no deterministic
    path raises instead of drifting), inductor's deterministic mode (no on-device benchmarking that picks a kernel by
    its timing, which a resumed process could pick differently), no cuDNN autotuning. Slower; off by default."""
    os.environ['CUBLAS_WORKSPACE_CONFIG'] = ':4096:8'
    torch.use_deterministic_algorithms(True)
    import torch._inductor.config as inductor
    inductor.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True

def device_peak_flops(device):
    """The device's own peak, so MFU is not always quoted against an A100."""
    if not device.startswith('cuda'):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)

def device_problem(device):
    """Why `device` ('cpu', 'cuda', 'cuda:N', after resolve_device) cannot run here, or None."""
    if not device.startswith('cuda'):
        return None
    if not torch.cuda.is_available():
        return f"--device {device}: this machine has no CUDA device; use --device cpu (or auto)"
    index = device.partition(':')[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        return f"--device {device}: this machine has CUDA devices 0..{torch.cuda.device_count() - 1}"
    return None

def resolve_device(device):
    """'auto': cuda where there is one, else cpu; anything else as given."""
    return ('cuda' if torch.cuda.is_available() else 'cpu') if device == 'auto' else device

def resolve_loss_chunk(chunk, device_type):
    """-1 (auto): the chunked loss (engramlib/linear_ce.py) on CUDA, where the whole logits' memory traffic costs time; the plain
    head on CPU, so the CPU figures (quickstart, config fingerprints) stay the plain path's."""
    return (4096 if device_type == 'cuda' else 0) if chunk == -1 else chunk

def resolve_dtype(dtype, device):
    """'auto': bfloat16 on a CUDA device that has it, else float32; anything else as given."""
    if dtype != 'auto':
        return dtype
    return 'bfloat16' if device.startswith('cuda') and torch.cuda.is_bf16_supported() else 'float32'

# torch.compile's modes; the last two capture CUDA graphs (static shapes and addresses, a private memory pool)
COMPILE_MODES = ('default', 'max-autotune-no-cudagraphs', 'max-autotune', 'reduce-overhead')
CUDA_GRAPH_MODES = COMPILE_MODES[2:]

def compile_model(model, mode):
    """torch.compile in one of COMPILE_MODES: train.py and bench.py compile through here."""
    return torch.compile(model, mode=None if mode == 'default' else mode)
