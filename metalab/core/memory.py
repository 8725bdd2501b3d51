"""Memory measurement.

Three views, from exact to coarse:

* :class:`SavedTensorMeter` counts the bytes autograd keeps alive for backward (the "graph
  memory"), via saved-tensor hooks, each storage counted once.  Exact and device independent.
* :func:`peak_rss_in_subprocess` runs a function in a fresh interpreter and reports its peak
  resident set size, so earlier allocations of the calling process do not pollute the number.
* :func:`cuda_peak_bytes` wraps ``torch.cuda.max_memory_allocated`` around a call on GPU.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
from collections.abc import Callable
from typing import Any

import torch


class SavedTensorMeter:
    """Count distinct bytes saved for backward inside the ``with`` block.

    ``with SavedTensorMeter() as meter: loss = f(params)`` then ``meter.bytes``.  Tensors that share a
    storage (views, the same tensor saved by several ops) are counted once, at the storage's size.
    """

    def __init__(self) -> None:
        self._storages: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        self._storages[key] = max(self._storages.get(key, 0), storage.nbytes())
        return tensor

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    @property
    def megabytes(self) -> float:
        return self.bytes / 2**20


def _peak_rss_bytes() -> int:
    """This process's peak resident set size.

    On Linux this reads VmHWM, the high-water mark of the process's own address space: getrusage's
    ru_maxrss would also carry the parent's peak across fork + exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _child(queue: mp.Queue, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        result = fn(*args, **kwargs)
        queue.put(("ok", _peak_rss_bytes(), result))
    except BaseException as exc:  # report any failure to the parent instead of hanging it
        queue.put(("error", 0, f"{type(exc).__name__}: {exc}"))


def peak_rss_in_subprocess(fn: Callable[..., Any], *args: Any, timeout: float = 600, **kwargs: Any) -> tuple[int, Any]:
    """Run ``fn(*args, **kwargs)`` in a fresh (spawned) process; return (peak RSS bytes, its result).

    ``fn`` must be importable (a module-level function) and its result picklable.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(queue, fn, args, kwargs))
    process.start()
    try:
        status, peak, payload = queue.get(timeout=timeout)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    if status != "ok":
        raise RuntimeError(f"the measured function failed in its subprocess: {payload}")
    return peak, payload


def cuda_peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cuda") -> tuple[int, Any]:
    """Peak CUDA memory allocated while ``fn()`` runs, above what was allocated before; and its result."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device={device!s} is not allowed: cuda_peak_bytes needs a CUDA device")
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline, result
