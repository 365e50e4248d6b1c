"""``RunClock``: where the wall time of each training epoch goes, as the ``time/`` metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class RunClock:
    """Seconds per named part of the current epoch (``with clock.timed("env"): ...``), shared by the callbacks.

    On a GPU, queued work is waited for at each boundary, so each part is charged its own GPU time (the SAC updates
    are launched asynchronously and would otherwise be billed to the next operation that waits for the GPU).
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.parts: dict[str, float] = {}
        self.epoch_start = self.now()

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

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
        """Start timing a new epoch: its start time, no parts yet."""
        self.epoch_start = self.now()
        self.reset()

    def epoch_metrics(self, env_steps: int, sac_updates: int) -> dict[str, float]:
        """The ``time/`` metrics of the epoch since :meth:`start_epoch`, which took ``env_steps`` env steps and
        ``sac_updates`` SAC updates: its wall seconds, each part's seconds, and the SAC updates' share (the
        rest: the Trainer's training steps) with the rates both give."""
        elapsed = self.now() - self.epoch_start
        sac_seconds = max(elapsed - sum(self.parts.values()), 1e-9)
        return {
            "time/env_steps_per_s": env_steps / elapsed,
            "time/sac_updates_per_s": sac_updates / sac_seconds,
            "time/epoch_s": elapsed,
            "time/sac_s": sac_seconds,
            **{f"time/{key}_s": value for key, value in self.parts.items()},
        }
