"""``RunClock``: where the wall time of each training epoch goes, as the ``time/`` metrics.

Time the process spends suspended by ``SIGTSTP`` (Ctrl-Z in a terminal, ``kill -TSTP PID``; continue with ``fg`` or
``kill -CONT PID``) is left out of every figure, so pausing a run does not inflate its timings or the results' wall
hours. A ``SIGSTOP`` cannot be seen by the process: time stopped that way is counted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_suspended_s = 0.0  # seconds this process spent suspended by SIGTSTP, since it started watching
_watchers = 0  # clocks watching now; the handler stays installed while there is one
_previous_handler: object = None  # what SIGTSTP did before the first watcher, put back after the last


def _suspend(signum: int, frame: object) -> None:
    """SIGTSTP handler: stop this process until SIGCONT and count the stopped time. SIGSTOP rather than the default
    action of SIGTSTP, which Linux discards for a process whose group has no controlling shell (e.g. under nohup)."""
    global _suspended_s
    start = time.perf_counter()
    os.kill(os.getpid(), signal.SIGSTOP)  # returns once the process is continued
    _suspended_s += time.perf_counter() - start


def watch_suspensions() -> bool:
    """Count SIGTSTP suspensions from now on, until the matching :func:`stop_watching_suspensions`. Only from the
    main thread, and only where SIGTSTP still has its default action (a handler set by someone else is kept);
    returns whether this call is watching (and so must be matched)."""
    global _watchers, _previous_handler
    tstp = getattr(signal, "SIGTSTP", None)
    if tstp is None or threading.current_thread() is not threading.main_thread():
        return False
    if _watchers == 0:
        if signal.getsignal(tstp) != signal.SIG_DFL:
            return False
        _previous_handler = signal.signal(tstp, _suspend)
    _watchers += 1
    return True


def stop_watching_suspensions() -> None:
    """End one :func:`watch_suspensions`; the last one puts SIGTSTP's previous action back."""
    global _watchers
    _watchers -= 1
    if _watchers == 0 and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTSTP, _previous_handler)


def suspended_seconds() -> float:
    """Seconds this process has spent suspended by SIGTSTP since :func:`watch_suspensions`."""
    return _suspended_s


class RunClock:
    """Seconds per named part of the current epoch (``with clock.timed("env"): ...``), shared by the callbacks.

    On a GPU, queued work is waited for at each boundary, so each part is charged its own GPU time (the SAC updates
    are launched asynchronously and would otherwise be billed to the next operation that waits for the GPU).
    Suspensions by SIGTSTP are not counted while the clock :meth:`watch`-es for them (module docstring); the
    process's SIGTSTP action is put back by :meth:`stop_watching`.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.parts: dict[str, float] = {}
        self.epoch_start = self.now()
        self.epoch_suspended_start = suspended_seconds()
        self.epoch_end: float | None = None
        self._watching = False

    def watch(self) -> None:
        """Leave out time suspended by SIGTSTP from now on (installs the process's handler; see the module)."""
        if not self._watching:
            self._watching = watch_suspensions()

    def stop_watching(self) -> None:
        if self._watching:
            stop_watching_suspensions()
            self._watching = False

    def now(self) -> float:
        """Seconds on a monotonic clock that stands still while the process is suspended."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - suspended_seconds()

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.parts[part] = self.parts.get(part, 0.0) + self.now() - start

    def reset(self) -> None:
        self.parts = {}

    def start_epoch(self) -> None:
        """Start timing an epoch. The first: from now, no parts yet. After :meth:`epoch_metrics`, the epoch began
        when the last one's figures were taken: what was timed since (a callback whose epoch-end hook ran after
        them) is already in its parts, and the rest of the time in between (the checkpoint saved at the epoch's
        end, Lightning's epoch bookkeeping) is its ``between_epochs`` part. No time goes uncounted."""
        now = self.now()
        if self.epoch_end is None:
            self.reset()
            self.epoch_start = now
            self.epoch_suspended_start = suspended_seconds()
        else:
            gap = now - self.epoch_end
            self.parts["between_epochs"] = max(gap - sum(self.parts.values()), 0.0)
        self.epoch_end = None

    def state_dict(self) -> dict[str, float | dict[str, float]]:
        """The current epoch's time so far (wall seconds, suspended seconds, each part's seconds), for a checkpoint
        written inside an epoch."""
        return {"elapsed_s": self.now() - self.epoch_start,
                "suspended_s": suspended_seconds() - self.epoch_suspended_start, "parts": dict(self.parts)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue the epoch of :meth:`state_dict` from now: its time so far counts, the time in between does not."""
        now = self.now()
        self.epoch_start = now - state["elapsed_s"]
        self.epoch_suspended_start = suspended_seconds() - state["suspended_s"]
        self.parts = dict(state["parts"])
        self.epoch_end = None

    def epoch_metrics(self, env_steps: int, sac_updates: int) -> dict[str, float]:
        """The ``time/`` metrics of the epoch since :meth:`start_epoch`, which took ``env_steps`` env steps and
        ``sac_updates`` SAC updates: its wall seconds, each part's seconds, and the SAC updates' share (the
        rest: the Trainer's training steps) with the rates both give; and the seconds it was suspended, which
        none of the others include. The next epoch's time counts from here (:meth:`start_epoch`)."""
        elapsed = self.now() - self.epoch_start
        sac_seconds = max(elapsed - sum(self.parts.values()), 1e-9)
        suspended = suspended_seconds()
        metrics = {
            "time/env_steps_per_s": env_steps / elapsed,
            "time/sac_updates_per_s": sac_updates / sac_seconds,
            "time/epoch_s": elapsed,
            "time/sac_s": sac_seconds,
            "time/suspended_s": suspended - self.epoch_suspended_start,
            **{f"time/{key}_s": value for key, value in self.parts.items()},
        }
        self.epoch_suspended_start = suspended
        self.epoch_start = self.epoch_end = self.now()
        self.reset()
        return metrics
