"""
The stops a run survives: SIGTERM (a scheduler, a preempted VM), SIGUSR1 (a scheduler's early warning), Ctrl-C.
A stop signal only sets a flag: the loop finishes the step, saves ckpt.pt and ends (a second Ctrl-C quits at once).
"""
import signal
import sys

import torch
import torch.distributed as dist

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
STOP_GRACE_S = 180     # DDP: seconds a stop may take (the step, a checkpoint write) before the process is ended


class StopSignals:
    """With it, the handlers are this run's; `requested(it)` says which signal every process agrees to stop on."""

    def __init__(self, ddp, master, device, log_interval):
        self.ddp, self.master, self.device, self.log_interval = ddp, master, device, log_interval
        self.signal, self.previous = 0, {}

    def __enter__(self):
        self.previous = {s: signal.signal(s, self.on_signal) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)

    def on_signal(self, signum, frame):
        if self.signal and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        if self.ddp:                    # a peer that died leaves this rank blocked in a collective: SIGALRM ends it
            signal.alarm(STOP_GRACE_S)
        if self.master:
            print(f"\n{signal.Signals(signum).name}: stopping after this step, with ckpt.pt saved"
                  + (" (Ctrl-C again quits at once)" if signum == signal.SIGINT else ''), file=sys.stderr, flush=True)

    def requested(self, it):
        """The signal every process agrees to stop on (DDP: a max over ranks at log steps, where the loop syncs anyway)."""
        if not self.ddp:
            return self.signal
        if it % self.log_interval:
            return 0
        flag = torch.tensor(self.signal, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag)
