"""The operator tools, run from the repo root as `python -m tools.<name>`: the GPU check and the GPU replica
(gpu_check, gpu_study; `bash gpu_check.sh` / `bash gpu_study.sh` wrap them), the corpora's recipes (corpora,
replica_corpus), the data-side map (datamap), the planted-flip control (planted) and the learned seeds' check
(seed_check). Nothing in the library, the model or the extensions imports a tool."""
