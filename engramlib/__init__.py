"""The library under the commands and the paper's model: the data dir (data, tokens, counting), checkpoint I/O
and resume, the optimizer and the host tables (optim, offload), the stratified metrics, the system (devices,
compile), safe writes (fsafe), provenance and the run dir. It imports nothing above it: no command, no tool, no
extension (tests/test_layout.py)."""
