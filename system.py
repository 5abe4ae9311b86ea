"""The machine a run uses, resolved in one place: 'auto' device and dtype, mixed precision, the device's peak FLOPs."""
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

def device_peak_flops(device):
    """The device's own peak, so MFU is not always quoted against an A100."""
    if not device.startswith('cuda'):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)

def resolve_device(device):
    """'auto': cuda where there is one, else cpu; anything else as given."""
    return ('cuda' if torch.cuda.is_available() else 'cpu') if device == 'auto' else device

def resolve_dtype(dtype, device):
    """'auto': bfloat16 on a CUDA device that has it, else float32; anything else as given."""
    if dtype != 'auto':
        return dtype
    return 'bfloat16' if device.startswith('cuda') and torch.cuda.is_bf16_supported() else 'float32'
