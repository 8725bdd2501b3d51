"""Wall-clock timing that waits for queued CUDA work before reading the clock."""

from __future__ import annotations

import time

import torch


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``; synchronises CUDA at both ends."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def __enter__(self) -> Stopwatch:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start
