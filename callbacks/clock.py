"""``RunClock``: where the wall time of each training epoch goes, as the ``time/<part>_s`` metrics."""

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
