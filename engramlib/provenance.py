"""What made a result: the code's git commit (and whether the tree had changes), the library versions and
the device. Written into every run dir (config.json) and every bench result; shown by the study report."""
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))    # the repo root

def git(*args):
    try:
        p = subprocess.run(['git', '-C', HERE, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None

def provenance(device='cpu', world_size=1):
    import torch
    status = git('status', '--porcelain', '--untracked-files=no')
    cuda = device.startswith('cuda') and torch.cuda.is_available()
    return {'git_commit': git('rev-parse', 'HEAD'), 'git_dirty': None if status is None else bool(status),
            'python': platform.python_version(), 'torch': torch.__version__, 'cuda': torch.version.cuda,
            'device': torch.cuda.get_device_name(device) if cuda else f"cpu ({platform.processor() or platform.machine()}, "
                                                                     f"{os.cpu_count()} cores)",
            'world_size': world_size, 'host': platform.node(), 'argv': sys.argv}
