# Create (once) and activate the Python environment this repo runs in; `source setup.sh` (quickstart.sh
# and .ci/run do). A venv outside the clone, keyed by the requirements, so tests and runs share it.
#   ENGRAM_VENV=/path   use that venv instead
# torch: the CUDA build where `nvidia-smi` sees a GPU; otherwise the CPU build (PyPI's default Linux
# wheel is a multi-GB CUDA build, so CPU machines take it from PyTorch's CPU index when reachable).
_opts=$(set +o)            # the caller's shell options, restored at the end (this file is sourced)
set -euo pipefail
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then _flavor=cuda; else _flavor=cpu; fi
_key=$(cat "$_here/requirements.txt" "$_here/requirements-dev.txt" "$_here/setup.sh" | sha256sum | cut -c1-12)
venv="${ENGRAM_VENV:-$HOME/.cache/engram-nine/venv-$_flavor-$_key}"
if [ ! -f "$venv/.complete" ]; then
  if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
    echo "error: no C++ compiler (c++, g++ or clang++): bbhash (the MPHF of the hot tier) builds from source." >&2
    echo "  Install one: sudo apt-get install g++ (Debian/Ubuntu), sudo dnf install gcc-c++ (Fedora), xcode-select --install (macOS)." >&2
    eval "$_opts"; return 1 2>/dev/null || exit 1
  fi
  echo "setting up $venv (torch: $_flavor) ..."
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  if [ "$_flavor" = cuda ]; then
    "$venv/bin/pip" install -q "torch>=2.4"
  elif "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('https://download.pytorch.org/whl/cpu/torch/', timeout=5)" 2>/dev/null; then
    "$venv/bin/pip" install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  else   # no PyTorch index here: a local CPU wheel if pip's config has one (this project's machines do)
    "$venv/bin/pip" install -q torch==2.13.0
  fi
  "$venv/bin/pip" install -q -r "$_here/requirements-dev.txt"    # the open `torch` requirement is met: no second torch
  touch "$venv/.complete"
fi
source "$venv/bin/activate"
eval "$_opts"
