"""Imported first by every script: without the repo's environment, one line that says how to get it
(instead of an ImportError traceback from deep inside an import)."""
import importlib.util
import sys

NEEDED = ('numpy', 'torch', 'tqdm')
missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"error: {', '.join(missing)} not installed in this Python ({sys.executable}). "
             f"Run `source setup.sh` first: it builds (once) and activates the repo's environment.")
