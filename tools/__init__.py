"""The operator tools, run from the repo root as `python -m tools.<name>`: the GPU check and the GPU replica
(gpu_check, gpu_study; `bash gpu_check.sh` / `bash gpu_study.sh` wrap them), the corpora's recipes (corpora,
replica_corpus), the data-side map (datamap), the planted-flip control (planted), the learned seeds' check
(seed_check), and bench.py's MD-mix and counting timers (bench_mdx, bench_counting). Nothing in the library, the
model or the extensions imports a tool."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # the repo root: the tools run as python -m tools.<name>


def one_line(main, argv):
    """main(argv)'s exit status, with every failure one `error:` line and a non-zero exit: a child script's (its own
    `error:` line, not the traceback around it), an interrupt, a file that cannot be read or written, a damaged
    archive or JSON file. A bug in the tool itself still shows its traceback."""
    import json
    import tarfile
    from engramlib.fsafe import DataError
    try:
        return main(argv)
    except KeyboardInterrupt:
        why, code = "interrupted; what was finished is kept (a prepare or a pack is written whole or not at all)", 130
    except (ChildFailed, DataError) as e:
        why, code = str(e), 1
    except (tarfile.TarError, json.JSONDecodeError) as e:
        why, code = f"{type(e).__name__}: {e}", 1
    except OSError as e:
        why, code = f"{e.filename or ''}: {e.strerror or e}", 1
    print(f"error: {why}", file=sys.stderr)
    return code


class ChildFailed(RuntimeError):
    """A repo script run by a tool exited non-zero: the message is its command and its own error line."""

    def __init__(self, args, code, output):
        lines = [l for l in output.strip().splitlines() if l.strip()]
        said = next((l[len('error: '):] for l in reversed(lines) if l.startswith('error: ')), lines[-1] if lines else '')
        super().__init__(f"{' '.join(args[:3])} ... exited {code}: {said}")
        self.output = output
