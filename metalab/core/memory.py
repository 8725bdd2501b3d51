"""Memory measurement.

Three views, from exact to coarse:

* :class:`SavedTensorMeter` counts the bytes autograd keeps alive for backward (the "graph
  memory"), via saved-tensor hooks, each storage counted once: the peak held at once and the total
  ever saved.  Exact and device independent.
* :func:`peak_rss_in_subprocess` runs a function in a fresh interpreter and reports its peak
  resident set size, so earlier allocations of the calling process do not pollute the number.
* :func:`cuda_peak_bytes` wraps ``torch.cuda.max_memory_allocated`` around a call on GPU.
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable
from typing import Any

import torch


class _Saved:
    """What autograd keeps for one saved tensor while metered: the tensor, and a release callback."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class SavedTensorMeter:
    """Measure the bytes autograd keeps alive for backward inside the ``with`` block.

    ``with SavedTensorMeter() as meter: loss = f(params)`` then ``meter.peak_bytes``: the largest total
    held at any moment (graphs freed inside the block, e.g. one per inner step, stop counting when they
    are freed), and ``meter.total_bytes``: every distinct storage saved at some point.  Tensors sharing
    a storage (views, one tensor saved by several ops) count once, at the storage's size.
    """

    def __init__(self) -> None:
        self._live: dict[tuple[str, int], list[int]] = {}  # storage -> [bytes, holders alive]
        self._seen: dict[tuple[str, int], int] = {}
        self._current = 0
        self.peak_bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor: torch.Tensor) -> _Saved:
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        size = storage.nbytes()
        self._seen[key] = max(self._seen.get(key, 0), size)
        entry = self._live.setdefault(key, [0, 0])
        if size > entry[0]:
            self._current += size - entry[0]
            entry[0] = size
        entry[1] += 1
        self.peak_bytes = max(self.peak_bytes, self._current)
        holder = _Saved(tensor.detach())  # detached: a saved output must not point back to its grad_fn (a cycle)
        weakref.finalize(holder, self._release, key)
        return holder

    @staticmethod
    def _unpack(holder: _Saved) -> torch.Tensor:
        return holder.tensor

    def _release(self, key: tuple[str, int]) -> None:
        entry = self._live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self._current -= entry[0]
            del self._live[key]

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    @property
    def total_bytes(self) -> int:
        return sum(self._seen.values())

    @property
    def live_bytes(self) -> int:
        """Bytes still held now (graphs created in the block and not yet freed)."""
        return self._current

    @property
    def peak_megabytes(self) -> float:
        return self.peak_bytes / 2**20


def proc_kilobytes(path: str, key: str) -> int | None:
    """The ``key:`` line of a Linux /proc file such as /proc/meminfo or /proc/self/status, in bytes (its
    values are in kB); None where the file or the line does not exist."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    On Linux this reads VmHWM, the high-water mark of the process's own address space: getrusage's
    ru_maxrss would also carry the parent's peak across fork + exec.
    """
    peak = proc_kilobytes("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _measure_in_child(payload: str, answer: str) -> None:
    """The child's side: load (fn, args, kwargs) from ``payload``, run it, write
    ("ok", peak RSS, result) or ("error", 0, message) to ``answer``."""
    with open(payload, "rb") as source:
        fn, args, kwargs = pickle.load(source)
    try:
        result = fn(*args, **kwargs)
        outcome = ("ok", peak_rss_bytes(), result)
    except BaseException as exc:  # report any failure to the parent as text
        outcome = ("error", 0, f"{type(exc).__name__}: {exc}")
    with open(answer, "wb") as sink:
        pickle.dump(outcome, sink)


# The child interpreter: the parent's sys.path first (so ``fn`` unpickles), then the measured call.
_CHILD_CODE = (
    "import pickle, sys\n"
    "with open(sys.argv[1], 'rb') as f: sys.path[:] = pickle.load(f)\n"
    "from metalab.core.memory import _measure_in_child\n"
    "_measure_in_child(sys.argv[2], sys.argv[3])\n"
)


def peak_rss_in_subprocess(fn: Callable[..., Any], *args: Any, timeout: float = 600, **kwargs: Any) -> tuple[int, Any]:
    """Run ``fn(*args, **kwargs)`` in a fresh interpreter and measure its peak resident set size.

    The child is a plain ``python -c`` process, not a multiprocessing one, so it never re-runs the
    caller's ``__main__`` (a script without a main guard, a Streamlit page) and a child that dies is
    reported at once.

    Parameters
    ----------
    fn : callable
        An importable (module-level) function; its arguments and result must pickle.
    *args, **kwargs
        Its arguments.
    timeout : float
        Seconds the child may run.

    Returns
    -------
    (int, object)
        The child's peak RSS in bytes, and ``fn``'s result.

    Raises
    ------
    RuntimeError
        When ``fn`` raises, the child dies, or it runs past ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="metalab-rss-") as folder:
        path, payload, answer = (os.path.join(folder, name) for name in ("path", "payload", "answer"))
        with open(path, "wb") as sink:
            pickle.dump(list(sys.path), sink)
        with open(payload, "wb") as sink:
            pickle.dump((fn, args, kwargs), sink)
        try:
            child = subprocess.run(
                [sys.executable, "-c", _CHILD_CODE, path, payload, answer],
                stderr=subprocess.PIPE,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the measured function ran past timeout={timeout} s in its subprocess") from None
        if not os.path.exists(answer):
            tail = child.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(
                f"the measurement subprocess died with exit code {child.returncode} before reporting"
                + (": " + " / ".join(tail) if tail else "")
            )
        with open(answer, "rb") as source:
            status, peak, result = pickle.load(source)
    if status != "ok":
        raise RuntimeError(f"the measured function failed in its subprocess: {result}")
    return peak, result


def cuda_peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cuda") -> tuple[int, Any]:
    """Peak CUDA memory allocated while ``fn()`` runs, above what was allocated before.

    Parameters
    ----------
    fn : callable
        Called once with no arguments.
    device : torch.device or str
        A CUDA device (anything else is a ValueError).

    Returns
    -------
    (int, object)
        The peak in bytes above the allocation before the call, and ``fn()``'s result.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device={device!s} is not allowed: cuda_peak_bytes needs a CUDA device")
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline, result
