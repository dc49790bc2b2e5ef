"""A run stopped by SIGINT / SIGTERM: the current step finishes, a checkpoint is written, one line says how to
go on (train.py's loop asks `received` after every step)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class StopSignals:
    """SIGINT / SIGTERM while the block runs: recorded (`received`) for the loop to stop at its next step, or,
    with raise_now, raised at once."""

    def __init__(self, raise_now=None):
        """raise_now: fn(signum) -> the exception to raise at once on a signal (the final evaluation, which
        has its checkpoint already and nothing to finish); None: only record the signal for the loop."""
        self.received = None
        self.previous = {}
        self.raise_now = raise_now

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum
        if self.raise_now is not None:  # nothing to finish first: stop where we are
            raise self.raise_now(signum)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def stopped_message(signum: int, step: int, resume_dir: Path) -> str:
    """The one line of a run stopped by a signal, during training or its final evaluation alike."""
    name = signal.Signals(signum).name
    return f"{name}: stopped at step {step} with a checkpoint; continue with --resume --run-dir {resume_dir}"
