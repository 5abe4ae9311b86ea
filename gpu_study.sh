#!/usr/bin/env bash
# The GPU replica in one command (tools/gpu_study.py says what it does):
#   bash gpu_study.sh --prepare --source FILE... [PACK]   on a CPU machine, after `source setup.sh`: data + pack (<= 50 MiB)
#   bash gpu_study.sh [PACK] [OUT]                        on the GPU, with the python that has torch (no venv, no network)
#   bash gpu_study.sh --dry [PACK] [OUT]                  on a CPU: the same steps at tiny shapes
# PACK defaults to data/gpu_replica_pack, OUT to out/gpu_study; PYTHON=... picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")" || exit 1
exec "${PYTHON:-python3}" -m tools.gpu_study "$@"
