#!/usr/bin/env bash
# The main job, offline, on the data shipped in assets/: Tiny Shakespeare with GPT-2's BPE -> data dir
# -> tiny Nine and tiny Hash (iso-parameter) -> the stratified study report. Re-running reuses what is done.
# Arguments go to every train.py run (e.g. `bash quickstart.sh --max_iters=40` for a shorter look); runs with
# arguments go to their own dirs (out/quickstart_<hash of the arguments>/, reports/ likewise), so a finished default
# quickstart is never taken for them, nor they for it.
# wandb: offline runs in ./wandb unless you are logged in (`wandb sync wandb/offline-run-*` uploads them later).
set -euo pipefail
cd "$(dirname "$0")" || exit 1
# shellcheck source=/dev/null  # (setup.sh is checked on its own)
source ./setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
start=$(date +%s)
python prepare_fineweb.py --source assets/tinyshakespeare.txt --tokenizer gpt2 --out data/shakespeare
name=quickstart
if [ $# -gt 0 ]; then name=quickstart_$(printf '%s\n' "$@" | sha256sum | cut -c1-8); fi
python study.py configs/tiny_nine.py configs/tiny_hash.py --seeds=0 --out="out/$name" --report="reports/$name" -- "$@"
echo "quickstart done in $(( $(date +%s) - start )) s: runs in out/$name/, report in reports/$name/report.md (+ PNG figures)"
