"""What one hypergradient costs: graph memory, time per task, the CUDA peak and a fresh process's peak RSS.

The measured call always runs task by task (``batch_mode="sequential"``): the saved-tensor hooks of
:class:`~metalab.core.memory.SavedTensorMeter` do not see inside torch.func's vmap, and one task at a
time is the memory the paper compares.  ``batch`` is anything with the tensors ``support_x`` (B, n,
...), ``support_y``, ``query_x``, ``query_y`` (an :class:`~metalab.data.EpisodeBatch`).
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from typing import Any

import torch

from metalab.core.device import torch_threads
from metalab.core.memory import SavedTensorMeter, cuda_peak_bytes, peak_rss_in_subprocess
from metalab.core.results import HypergradResult
from metalab.core.timing import Stopwatch
from metalab.implicit.common import quiet_numerics
from metalab.implicit.registry import hypergradient
from metalab.nets import seeded_conv4

MB = 2**20
BATCH_FIELDS = ("support_x", "support_y", "query_x", "query_y")


def _call(method: str, backbone, params, head, batch, options: Mapping[str, Any]) -> HypergradResult:
    tensors = (getattr(batch, name) for name in BATCH_FIELDS)
    return hypergradient(method, backbone, params, head, *tensors, **{**options, "batch_mode": "sequential"})


def time_method(method: str, backbone, params, head, batch, options: Mapping[str, Any], *, threads: int = 1) -> float:
    """Seconds per task of one hypergradient call of ``method`` (task by task, on ``threads`` torch threads).

    Parameters
    ----------
    method : str
        A key of :data:`~metalab.implicit.HYPERGRADIENTS`.
    backbone, params, head
        The network, its parameters and the head.
    batch
        The meta-batch (see the module docstring).
    options : mapping
        Hypergradient options (``batch_mode`` is overridden).
    threads : int
        Torch threads during the call (0: unchanged).

    Returns
    -------
    float
        Wall-clock seconds of the call divided by the number of tasks.
    """
    with torch_threads(threads), quiet_numerics(), Stopwatch() as watch:
        _call(method, backbone, params, head, batch, options)
    return watch.seconds / int(batch.support_x.shape[0])


def measure_method(
    method: str,
    backbone,
    params,
    head,
    batch,
    options: Mapping[str, Any],
    *,
    repeats: int = 2,
    threads: int = 1,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Graph memory (exact), seconds per task and, on CUDA, the peak allocation of one hypergradient.

    Parameters
    ----------
    method, backbone, params, head, batch, options, threads
        As in :func:`time_method`.
    repeats : int
        Timed calls after the metered one; the fastest counts (0: no timing, ``seconds_per_task`` NaN).
    device : torch.device, optional
        A CUDA device adds one call under :func:`~metalab.core.memory.cuda_peak_bytes`.

    Returns
    -------
    dict
        ``graph_bytes``/``graph_mb`` (peak bytes autograd held for backward), ``saved_total_mb``
        (every storage ever saved), ``seconds_per_task``, ``cuda_peak_mb`` (NaN off CUDA) and the
        result's ``status``.
    """
    n_tasks = int(batch.support_x.shape[0])
    with torch_threads(threads), quiet_numerics():
        with SavedTensorMeter() as meter:
            result = _call(method, backbone, params, head, batch, options)
        times = []
        for _ in range(repeats):
            with Stopwatch() as watch:
                _call(method, backbone, params, head, batch, options)
            times.append(watch.seconds)
        cuda_mb = math.nan
        if device is not None and device.type == "cuda":
            peak, _ = cuda_peak_bytes(lambda: _call(method, backbone, params, head, batch, options), device)
            cuda_mb = peak / MB
    return {
        "graph_bytes": int(meter.peak_bytes),
        "graph_mb": meter.peak_bytes / MB,
        "saved_total_mb": meter.total_bytes / MB,
        "seconds_per_task": min(times) / n_tasks if times else math.nan,
        "cuda_peak_mb": cuda_mb,
        "status": result.status,
    }


def _rss_probe(model: dict[str, Any], tensors: dict[str, torch.Tensor], method: str | None, options, threads: int):
    """The subprocess's work: build the model, then run one hypergradient of ``method`` (None: nothing)."""
    torch.set_num_threads(max(1, threads))
    backbone, params, head = seeded_conv4(**model)
    if method is not None:
        with quiet_numerics():
            _call(method, backbone, params, head, types.SimpleNamespace(**tensors), options)


def peak_rss_of_hypergradient(
    method: str | None, model: Mapping[str, Any], batch, options: Mapping[str, Any], *, threads: int = 1
) -> int:
    """Peak resident set size (bytes) of a fresh CPU process that builds the model and runs one hypergradient.

    Parameters
    ----------
    method : str or None
        The method to run; None measures the baseline (interpreter, model and batch only), which a
        caller subtracts to get what the hypergradient itself adds.
    model : mapping
        Keyword arguments of :func:`metalab.nets.seeded_conv4` (``n_classes``, ``hidden``,
        ``image_size``, ``seed``...); the model is built on the CPU.
    batch
        The meta-batch (copied to the CPU for the child).
    options : mapping
        Hypergradient options.
    threads : int
        Torch threads in the child.

    Returns
    -------
    int
        The child's peak RSS in bytes.
    """
    tensors = {name: getattr(batch, name).cpu() for name in BATCH_FIELDS}
    spec = {**model, "device": "cpu"}
    peak, _ = peak_rss_in_subprocess(_rss_probe, spec, tensors, method, dict(options), threads)
    return peak
