"""
A run's clock: tokens per second and MFU between train-loss logs, and where the loop's time went (each eval, each
save's blocked time, the start-up before the loop). summary.json carries it; metrics.jsonl never does (timing is not
reproducible).
"""
import math
import time
from contextlib import contextmanager

import numpy as np


class Meter:

    def __init__(self, tokens_per_iter, log_interval, peak_flops, process_t0):
        self.tokens, self.log_interval, self.peak = tokens_per_iter, log_interval, peak_flops
        self.t0 = self.t_start = time.time()
        self.startup_s = self.t_start - process_t0
        self.running_mfu, self.speeds = -1.0, []
        self.spent = {'eval': [], 'save': []}       # seconds of each eval, each save (the first ones compile / pin)
        self.total = {'eval': 0.0, 'save': 0.0}

    def lap(self, it):
        """Seconds per iteration since the last log (iteration 0: its own time)."""
        t1 = time.time()
        dt, self.t0 = (t1 - self.t0) / (self.log_interval if it > 0 else 1), t1
        if it > 0:
            self.speeds.append(self.tokens / dt)
        return dt

    def mfu(self, model, it, dt):
        """The running MFU (an average over logs from iteration 5 on: the first ones compile), or -1 before."""
        mfu = model.estimate_mfu(self.tokens, dt, self.peak)
        if it >= 5 and math.isfinite(mfu):
            self.running_mfu = mfu if self.running_mfu < 0 else 0.9 * self.running_mfu + 0.1 * mfu
        return self.running_mfu

    @contextmanager
    def timing(self, kind, counted=True):
        """The loop's time in an eval or a save; counted: it did one (its own time is kept too)."""
        t = time.time()
        yield
        if counted:
            self.spent[kind].append(time.time() - t)
        self.total[kind] += time.time() - t

    def summary(self, final_wait_s):
        return {'tok_per_s_median': float(np.median(self.speeds)) if self.speeds else None,
                'wall_s': round(time.time() - self.t_start, 1),
                'eval_s': round(self.total['eval'], 2), 'save_blocked_s': round(self.total['save'], 2),
                'eval_times_s': [round(x, 3) for x in self.spent['eval']],
                'save_blocked_times_s': [round(x, 3) for x in self.spent['save']],
                'final_write_wait_s': round(final_wait_s, 3), 'startup_s': round(self.startup_s, 2)}
