"""Sketching ``dask.array`` and ``dask.dataframe`` collections in parallel, on threads or on a Dask cluster.

Every partition (a block of rows of an array, a partition of a data frame) is sketched where it
lives: the feature map is applied and its features summed, ``S_p = sum_{i in p} phi(x_i)`` with the
count ``n_p``.  The partial sketches are then merged in a tree, ``S = sum_p S_p`` and
``n = sum_p n_p``, which is :meth:`Sketch.merge`: the result equals ``Sketch.of`` on the whole data
up to the float64 summation order (and exactly when the sums are exact).  The tree is fixed by the
partition order, so every scheduler returns the same bits.

The feature map (a torch :class:`~metalab.compressive.feature_maps.SketchNetwork` included) is one
task of the graph, so it is pickled to the workers once, not with every partition; the workers must
be able to import metalab.  The fingerprint the workers' copy computes is checked against the local
one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from metalab.compressive.bounds import as_samples
from metalab.compressive.feature_maps import FeatureMap
from metalab.compressive.sketch import Sketch, merge_sketches
from metalab.compressive.streams import sketch_stream
from metalab.core.checks import check_int

INSTALL_HINT = "pip install metalab[scale]"
LOCAL_HOST = "127.0.0.1"
#: a local cluster has at most this many worker processes per CPU core (more only queue for the cores,
#: each holding its own interpreter, torch and copy of the feature map)
WORKERS_PER_CORE = 4


def _import_dask():
    """The ``dask`` and ``dask.array`` modules, or ImportError saying how to install them."""
    try:
        import dask
        import dask.array
    except ImportError as err:
        raise ImportError(f"sketching Dask collections needs dask ({INSTALL_HINT}): {err}") from None
    return dask, dask.array


def _import_distributed():
    """The ``distributed`` module, or ImportError saying how to install it."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError(f"a Dask cluster needs dask.distributed ({INSTALL_HINT}): {err}") from None
    return distributed


def local_cluster(n_workers: int):
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes on 127.0.0.1.

    No dashboard; the scheduler's health page listens on a free port.  Use it in a ``with`` block.
    ``n_workers`` is at most ``WORKERS_PER_CORE`` per CPU core (a ValueError before any process starts).
    The workers keep glibc's adaptive ``malloc``: distributed's default ``MALLOC_TRIM_THRESHOLD_``
    turns off the adaptive mmap threshold, so every feature batch (megabytes) would be mapped and
    page-faulted afresh, which halves the sketching rate.
    """
    dask, _ = _import_dask()
    distributed = _import_distributed()
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return distributed.LocalCluster(
            host=LOCAL_HOST,
            n_workers=check_int(
                "n_workers",
                n_workers,
                1,
                WORKERS_PER_CORE * (os.cpu_count() or 1),
                hint=" (WORKERS_PER_CORE per CPU core)",
            ),
            threads_per_worker=1,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": f"{LOCAL_HOST}:0"},
        )


def _partitions(data: Any, input_dim: int, columns: Sequence[str] | None) -> list[Any]:
    """One delayed object per partition of ``data``, each an ``(N_p, input_dim)`` block of rows."""
    _, da = _import_dask()
    if isinstance(data, da.Array):
        if columns is not None:
            raise ValueError(f"columns={list(columns)!r} is not allowed with a dask.array: it has no column names")
        width = data.shape[1] if data.ndim == 2 else None
        if data.ndim != 2 or not (math.isnan(width) or width == input_dim):
            raise ValueError(f"data has shape {data.shape}, which is not allowed: (N, {input_dim})")
        # one chunk across the columns, so every block holds whole rows
        return list(data.rechunk({1: -1}).to_delayed().ravel())
    try:
        import dask.dataframe as dd
    except ImportError:
        dd = None
    if dd is None or not isinstance(data, dd.DataFrame):
        raise ValueError(
            f"data is a {type(data).__module__}.{type(data).__name__}, which is not allowed: a dask.array.Array or a "
            "dask.dataframe.DataFrame (sketch in-memory data with Sketch.of or sketch_stream)"
        )
    names = list(data.columns)
    if columns is not None:
        columns = list(columns)
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"columns={columns!r} is not allowed: {missing!r} not among {names!r}")
        data, names = data[columns], columns
    if len(names) != input_dim:
        raise ValueError(
            f"data has {len(names)} columns {names!r}, which is not allowed: feature_map.input_dim={input_dim}"
            " (pick the feature columns with columns=)"
        )
    return list(data.to_delayed())


def _sketch_partition(feature_map: FeatureMap, block: Any, index: int, batch_rows: int) -> Sketch:
    """The sketch of one partition, ``batch_rows`` rows at a time (runs on a worker; returned without the map)."""
    samples = as_samples(block, feature_map.input_dim, f"data partition {index}")
    if samples.shape[0] == 0:
        sketch = Sketch.empty(feature_map)
    else:
        sketch = sketch_stream(feature_map, samples.split(batch_rows))
    return replace(sketch, feature_map=None)


def _compute(result: Any, client: Any, n_workers: int) -> Sketch:
    """Run the graph: dask's current scheduler, threads, a local cluster, a cluster's address, or a Client.

    The clients made here are never the default: dask's current scheduler stays what it was.
    """
    dask, _ = _import_dask()
    if client is None:
        return dask.compute(result)[0]
    if client == "threads":
        return dask.compute(result, scheduler="threads")[0]
    distributed = _import_distributed()
    if isinstance(client, distributed.Client):
        return client.compute(result, sync=True)
    if client == "local":
        with local_cluster(n_workers) as cluster, distributed.Client(cluster, set_as_default=False) as local:
            return local.compute(result, sync=True)
    if not isinstance(client, str):
        raise ValueError(
            f"client={client!r} is not allowed: None, 'threads', 'local', a scheduler address or a distributed.Client"
        )
    try:
        remote = distributed.Client(client, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise ValueError(f"client={client!r} is not allowed: no Dask scheduler answered there ({err})") from None
    with remote:
        return remote.compute(result, sync=True)


def sketch_dask(
    feature_map: FeatureMap,
    data: Any,
    *,
    client: Any = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = 2048,
    split_every: int = 16,
    n_workers: int | None = None,
) -> Sketch:
    """The sketch of a Dask collection under ``feature_map``: each partition sketched where it lives, then merged.

    Parameters
    ----------
    feature_map : FeatureMap
        The per-sample map (shipped to the workers once).
    data : dask.array.Array or dask.dataframe.DataFrame
        ``(N, d)`` in row chunks, or a data frame.
    client : None, str or distributed.Client
        ``None``: dask's current scheduler (the active ``distributed.Client`` if there is one, else
        threads in this process); ``"threads"``: the threaded scheduler in this process; ``"local"``:
        a ``LocalCluster`` on 127.0.0.1 started and closed here; any other string: the address of a
        running scheduler (for example ``"tcp://10.0.0.5:8786"``); a Client is used as is.
    columns : sequence of str, optional
        The data frame's feature columns (and their order).
    batch_rows : int
        Rows whose features a worker computes at once (memory ``batch_rows x m`` whatever the
        partition size).
    split_every : int
        Partial sketches merged at a time in the tree.
    n_workers : int, optional
        ``client="local"`` only: single-threaded worker processes (default one per core).

    Returns
    -------
    Sketch
        The one-pass sketch of every row, up to the float64 summation order; rows are validated on
        the workers (shape, finite values).
    """
    if not isinstance(feature_map, FeatureMap):
        raise ValueError(f"feature_map={feature_map!r} is not allowed: a metalab.compressive FeatureMap")
    batch_rows = check_int("batch_rows", batch_rows, 1)
    split_every = check_int("split_every", split_every, 2)
    if n_workers is not None and client != "local":
        raise ValueError(f"n_workers={n_workers!r} is not allowed with client={client!r}: only with client='local'")
    n_workers = (os.cpu_count() or 1) if n_workers is None else check_int("n_workers", n_workers, 1)
    dask, _ = _import_dask()
    blocks = _partitions(data, feature_map.input_dim, columns)
    fingerprint = feature_map.fingerprint()
    shipped_map = dask.delayed(feature_map, name=f"feature-map-{fingerprint}", traverse=False)
    parts = [
        dask.delayed(_sketch_partition, pure=True)(shipped_map, block, i, batch_rows) for i, block in enumerate(blocks)
    ]
    if not parts:
        raise ValueError("data is not allowed: it has no partitions")
    while len(parts) > 1:
        parts = [
            dask.delayed(merge_sketches, pure=True)(parts[i : i + split_every])
            for i in range(0, len(parts), split_every)
        ]
    sketch = _compute(parts[0], client, n_workers)
    if sketch.map_id != fingerprint:
        raise RuntimeError(
            f"feature_map has fingerprint {fingerprint!r} here but {sketch.map_id!r} on the workers: it did not "
            "survive pickling (or the workers run a different metalab)"
        )
    if sketch.count == 0:
        raise ValueError("data is not allowed: it holds no samples")
    return replace(sketch, feature_map=feature_map)


def sketch_rows(feature_map: FeatureMap, rows: Any, scheduler: Any = "single", *, partitions: int = 8) -> Sketch:
    """The sketch of in-memory ``rows`` ``(N, d)``: in this process (``scheduler="single"``), or on Dask as
    ``partitions`` blocks of rows with :func:`sketch_dask` (``client=scheduler``: ``"threads"``,
    ``"local"``, an address or a Client).  Either way the same sketch, up to the summation order.

    Parameters
    ----------
    feature_map : FeatureMap
        The per-sample map (a Sketch-Network or a random map).
    rows : tensor, array or DataFrame
        The samples, ``(N, feature_map.input_dim)``.
    scheduler : str or distributed.Client
        ``"single"`` for this process, else where :func:`sketch_dask` runs.
    partitions : int
        Row blocks the Dask array is cut into.

    Returns
    -------
    Sketch
        The mean of the features of every row, with its count.
    """
    if scheduler == "single":
        return Sketch.of(feature_map, rows)
    _, da = _import_dask()
    samples = as_samples(rows, feature_map.input_dim).numpy()
    block = max(1, samples.shape[0] // check_int("partitions", partitions, 1))
    return sketch_dask(feature_map, da.from_array(samples, chunks=(block, samples.shape[1])), client=scheduler)
