#!/usr/bin/env bash
# The GPU check in one command (tools/gpu_check.py says what it does):
#   bash gpu_check.sh --prepare [--source FILE...] [DATA_DIR]   on a CPU machine, after `source setup.sh`: the data (< 60 MiB)
#   bash gpu_check.sh [DATA_DIR] [OUT_DIR]         on the GPU, with the python that has torch (no venv, no network)
#   bash gpu_check.sh --dry [DATA_DIR] [OUT_DIR]   on a CPU: the same steps at tiny shapes (about a minute)
# DATA_DIR defaults to data/gpu_check, OUT_DIR to out/gpu_check; PYTHON=... picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")" || exit 1
exec "${PYTHON:-python3}" -m tools.gpu_check "$@"
