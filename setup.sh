# shellcheck shell=bash
# Create (once) and activate the Python environment this repo runs in; `source setup.sh` (quickstart.sh
# and .ci/run do). A venv outside the clone, keyed by the requirements, so tests and runs share it.
#   ENGRAM_VENV=/path   use that venv instead
# torch: the CUDA build where `nvidia-smi` sees a GPU; otherwise the CPU build (PyPI's default Linux
# wheel is a multi-GB CUDA build, so CPU machines take it from PyTorch's CPU index when reachable).
# Sourced, it leaves the caller's shell options as they were and never exits the caller's shell: a failing step
# prints an `error:` line and makes `source setup.sh` return non-zero (a script with `set -e` then stops there).

_engram_setup() {
  local here flavor key venv
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" || return 1
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavor=cuda; else flavor=cpu; fi
  key=$(cat "$here/requirements.txt" "$here/requirements-dev.txt" "$here/setup.sh" | sha256sum | cut -c1-12) || return 1
  venv="${ENGRAM_VENV:-$HOME/.cache/engram-nine/venv-$flavor-$key}"
  if [ ! -f "$venv/.complete" ]; then
    if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
      echo "error: no C++ compiler (c++, g++ or clang++): bbhash (the MPHF of the hot tier) builds from source." >&2
      echo "  Install one: sudo apt-get install g++ (Debian/Ubuntu), sudo dnf install gcc-c++ (Fedora), xcode-select --install (macOS)." >&2
      return 1
    fi
    echo "setting up $venv (torch: $flavor) ..."
    rm -rf "$venv"
    python3 -m venv "$venv" || { echo "error: python3 -m venv $venv failed (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; return 1; }
    "$venv/bin/pip" install -q --upgrade pip || { echo "error: pip could not upgrade itself in $venv (network? a proxy?)" >&2; return 1; }
    if [ "$flavor" = cuda ]; then
      "$venv/bin/pip" install -q "torch>=2.4"
    elif "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('https://download.pytorch.org/whl/cpu/torch/', timeout=5)" 2>/dev/null; then
      "$venv/bin/pip" install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    else   # no PyTorch index here: a local CPU wheel if pip's config has one (this project's machines do)
      "$venv/bin/pip" install -q torch==2.13.0
    fi || { echo "error: installing torch into $venv failed (its pip output is above)" >&2; return 1; }
    # the open `torch` requirement is met: no second torch
    "$venv/bin/pip" install -q -r "$here/requirements-dev.txt" \
      || { echo "error: installing requirements-dev.txt into $venv failed (its pip output is above)" >&2; return 1; }
    touch "$venv/.complete"
  fi
  # shellcheck source=/dev/null
  source "$venv/bin/activate"
}

if _engram_setup; then _engram_rc=0; else _engram_rc=$?; fi
unset -f _engram_setup
# sourced: hand the status back to the caller (never exit its shell); run as `bash setup.sh`: exit with it
if (return 0 2>/dev/null); then return "$_engram_rc"; else exit "$_engram_rc"; fi
