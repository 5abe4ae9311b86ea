"""The machine a run uses, resolved in one place: 'auto' device and dtype, mixed precision, the device's peak FLOPs,
how the model is compiled, the memory it has, the DDP processes."""
import inspect
import os
import sys
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import ConfigError
from engramlib.options import Group, Option
from layers import SDPA_BACKENDS

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

def set_precision(device_type, deterministic):
    """TF32 matmuls on CUDA; with deterministic, the flags a bit-exact CUDA resume needs (set before the model's first
    matmul: cuBLAS reads its workspace setting once)."""
    if device_type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if deterministic:
        make_deterministic()

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


def resolve_system(cfg):
    """'auto' device and dtype: CUDA with bf16 where there is one, else CPU with float32."""
    cfg['device'] = resolve_device(cfg['device'])
    if device_problem(cfg['device']):
        raise ConfigError(device_problem(cfg['device']))
    if not cfg['device'].startswith('cuda'):
        cfg['backend'] = 'gloo'             # what DDP uses on CPU: config.json says what ran
        if cfg['sdpa_backend'] in ('cudnn', 'efficient'):
            raise ConfigError(f"--sdpa_backend='{cfg['sdpa_backend']}' is a CUDA kernel; on {cfg['device']} use 'auto', "
                              f"'flash' or 'math'")
    cfg['dtype'] = resolve_dtype(cfg['dtype'], cfg['device'])

def available_ram():
    """Bytes of memory the kernel can give this process now (MemAvailable), else the machine's total."""
    try:
        with open('/proc/meminfo') as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable:'))
    except (OSError, StopIteration, ValueError):
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


# -- DDP ------------------------------------------------------------------------------------------------------

def init_distributed(device, backend):
    """(ddp, rank, world, device) from torchrun's environment; gloo on CPU."""
    if int(os.environ.get('RANK', -1)) == -1:
        return False, 0, 1, device
    dist.init_process_group(backend=backend)
    if device.startswith('cuda'):
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(device)
    return True, dist.get_rank(), dist.get_world_size(), device

def split_for_world(cfg, world, master):
    """torchrun with more processes than micro-steps: the same global batch in smaller micro-batches (the windows are
    split-invariant, so it is the same run), or an error when the windows do not divide."""
    B, G = cfg['batch_size'], cfg['gradient_accumulation_steps']
    if G % world == 0:
        return
    total = B * G
    if total % world:
        raise ConfigError(f"the global batch of {total} windows (batch_size {B} x gradient_accumulation_steps {G}) "
                          f"does not divide over {world} processes; use a process count that divides {total}")
    b = max(d for d in range(1, B + 1) if (total // world) % d == 0)
    cfg['batch_size'], cfg['gradient_accumulation_steps'] = b, total // b
    if master:
        print(f"{world} processes: micro-batches of {b} windows, {total // b // world} per process per iter "
              f"(the global batch of {total} windows unchanged)")

def halve_micro_batch(cfg, ddp):
    """After an out-of-memory: micro-batches half as large and twice as many (the windows are split-invariant: the
    same experiment), or ConfigError where the split cannot change."""
    B, graphs = cfg['batch_size'], cfg['compile_mode'] in CUDA_GRAPH_MODES     # captured graphs keep their memory pool
    if B % 2 or ddp or graphs:    # DDP: one rank cannot change the split alone
        why = ' under DDP' if ddp else f" with --compile_mode='{cfg['compile_mode']}'" if graphs else ''
        raise ConfigError(f"out of GPU memory at micro-batch {B}{why}; set a smaller --batch_size and a larger "
                          f"--gradient_accumulation_steps (the same global batch)")
    cfg['batch_size'], cfg['gradient_accumulation_steps'] = B // 2, cfg['gradient_accumulation_steps'] * 2

def all_reduce(v, ddp):
    """v summed over the processes in place (under DDP), and returned."""
    if ddp:
        dist.all_reduce(v)
    return v

def wrap_ddp(model, device_type):
    """DDP without broadcast_buffers: the buffers are the n-gram index (data, identical on every rank,
    several MB), not state to synchronize before every forward."""
    no_sync = ({'forward_sync_buffers': False} if 'forward_sync_buffers' in inspect.signature(DDP).parameters
               else {'broadcast_buffers': False})                                     # torch >= 2.13 renamed it
    ddp = DDP(model, device_ids=[int(os.environ['LOCAL_RANK'])] if device_type == 'cuda' else None, **no_sync)
    _KEEP_UNTIL_EXIT.append(ddp)
    return ddp

# Never freed (exit_now ends the process): freeing a DDP model's Reducer frees gloo's process group, which can
# deadlock (its worker thread waits for the GIL to free a tensor while the main thread, holding the GIL, joins
# it). py-spy showed it both when main() returned and at interpreter exit, in tests/test_train.py's DDP runs.
_KEEP_UNTIL_EXIT = []

def exit_now(code):
    """Under torchrun, end without the interpreter's teardown (the DDP models stay referenced: see wrap_ddp).
    Everything is written and fsynced by now."""
    if 'RANK' in os.environ:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


# -- the system's settings (train.py's SETTINGS) -----------------------------------------------------------

def check_system(c):
    if not (c['device'] in ('auto', 'cpu', 'cuda') or c['device'].startswith('cuda:')):
        raise ConfigError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {c['device']!r}")
    if c['loss_chunk'] > 0 and c['loss_chunk'] % 8:
        raise ConfigError(f"--loss_chunk {c['loss_chunk']} is not a multiple of 8 (row blocks of 8k rows multiply as the whole "
                          f"matrix does, so the losses stay the plain head's)")
    if c['engram_tables'] == 'host':
        check_host_tables(c)
    if c['compile_mode'] != 'default' and not c['compile']:
        raise ConfigError(f"--compile_mode='{c['compile_mode']}' compiles the model, but --compile=False: drop one of them")
    if c['dtype'] == 'float16':
        raise ConfigError("--dtype='float16' needs loss scaling (a GradScaler), which this loop does not do: its "
                          "small gradients would flush to zero. Use 'bfloat16' (A100/H100, the default on CUDA) or 'float32'.")

def check_host_tables(c):
    """Host tables stage the rows each step reads (engramlib/offload.py): what reads or writes other rows, or keeps the
    table's state elsewhere, is refused."""
    if c['memory'] == 'none':
        raise ConfigError("--engram_tables='host' moves the memory tables, but --memory='none' has none")
    if c['table_optimizer'] != 'rowwise':
        raise ConfigError("--engram_tables='host' updates the rows each step reads: set --table_optimizer='rowwise' "
                          "(the paper's dense AdamW updates every row every step)")
    if int(os.environ.get('WORLD_SIZE', 1)) > 1:
        raise ConfigError("--engram_tables='host' keeps one host copy of the tables per process, not shared between "
                          "DDP ranks: run one process, or --engram_tables='device'")
    if c['compile_mode'] in CUDA_GRAPH_MODES:
        raise ConfigError(f"--compile_mode='{c['compile_mode']}' replays CUDA graphs, which would read the staged rows at "
                          f"their addresses when captured; with --engram_tables='host' use 'default' or "
                          f"'max-autotune-no-cudagraphs'")

SYSTEM = Group('system', dict(
    backend=Option('nccl', 'DDP backend on CUDA; CPU always uses gloo', run_only=True),
    device=Option('auto', "'auto' (cuda if available, else cpu) | 'cpu' | 'cuda' | 'cuda:1' ...", run_only=True),
    dtype=Option('auto', "'auto' (bfloat16 on CUDA, float32 on CPU) | 'float32' | 'bfloat16' ('float16' is refused: no GradScaler)",
                 choices=('auto', 'float32', 'bfloat16', 'float16'), run_only=True),
    compile=Option(True, 'torch.compile (CUDA only)', run_only=True),
    compile_mode=Option('default', "torch.compile's mode; opt-in, compiling for minutes: 'max-autotune-no-cudagraphs' "
                        "(autotuned kernels) | 'max-autotune' / 'reduce-overhead' (+ CUDA graphs: not with host tables, and "
                        "an out-of-memory step is not redone in smaller micro-batches)", choices=COMPILE_MODES, run_only=True),
    sdpa_backend=Option('auto', "attention's kernel: 'auto' (PyTorch's choice: flash on CUDA) | 'flash' | 'cudnn' | "
                        "'efficient' (CUDA only) | 'math'", choices=tuple(SDPA_BACKENDS), run_only=True),
    loss_chunk=Option(-1, 'rows of logits at a time in the loss (chunked linear + cross-entropy, never the whole logits: '
                      'engramlib/linear_ce.py); 0 = the plain head; -1 = auto: 4096 on CUDA, 0 on CPU', at_least=-1, run_only=True),
    deterministic=Option(False, 'bit-reproducible kernels (a resumed CUDA run equals the uninterrupted one; slower): '
                         "deterministic algorithms and cuBLAS's fixed workspace", run_only=True),
    resume_changes=Option((), "experiment keys a resume may change on purpose, e.g. ('learning_rate',); 'global_batch'",
                          run_only=True),
    engram_tables=Option('device', "'device' (paper: the memory tables on the model's device) | 'host': in host memory "
                         "with their row-wise AdamW state, each step's rows prefetched (engramlib/offload.py; --table_optimizer="
                         "'rowwise')", choices=('device', 'host'), run_only=True),
), check=check_system)
