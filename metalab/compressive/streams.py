"""Sketching data that arrive in chunks: iterators, CSV and Parquet files.

Only the running sum of features and the count are kept, so memory depends on the chunk size and
the sketch size, not on how many samples the stream holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from metalab.compressive.feature_maps import FeatureMap
from metalab.compressive.sketch import Sketch, feature_sum
from metalab.core.checks import check_int

PARQUET_SUFFIXES = (".parquet", ".pq")


def _select(chunk: Any, columns: Sequence[str] | None, index: int) -> Any:
    if columns is None:
        return chunk
    if not isinstance(chunk, pd.DataFrame):
        raise ValueError(
            f"chunks[{index}] is a {type(chunk).__name__}, which is not allowed with columns=: a DataFrame"
        )
    missing = [c for c in columns if c not in chunk.columns]
    if missing:
        raise ValueError(f"columns={list(columns)!r} is not allowed: {missing!r} not among {list(chunk.columns)!r}")
    return chunk[list(columns)]


def sketch_stream(feature_map: FeatureMap, chunks: Iterable[Any], *, columns: Sequence[str] | None = None) -> Sketch:
    """The sketch of all samples in ``chunks``, in one pass: ``S = sum_i sum_{x in chunk_i} phi(x)``.

    Parameters
    ----------
    feature_map : FeatureMap
        The per-sample map ``phi``.
    chunks : iterable
        Tensors, arrays or DataFrames, each ``(N_i, d)``; read once, in order.
    columns : sequence of str, optional
        The DataFrame columns to read (and their order); default all.

    Returns
    -------
    Sketch
        The sum of the features over every chunk with the count ``sum_i N_i``; a stream with no
        samples is a ValueError.
    """
    start = Sketch.empty(feature_map)
    total, count = start.total.clone(), 0
    for i, chunk in enumerate(chunks):
        chunk_total, rows = feature_sum(feature_map, _select(chunk, columns, i))
        total += chunk_total
        count += rows
    if count == 0:
        raise ValueError("chunks is not allowed: it holds no samples")
    return replace(start, total=total, count=count)


def _parquet_chunks(path: Path, columns: Sequence[str] | None, chunksize: int):
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is present in the project environment
        raise ValueError(f"path={str(path)!r} is a Parquet file, which needs pyarrow (pip install pyarrow)") from None
    reader = pq.ParquetFile(path)
    names = reader.schema_arrow.names
    missing = [c for c in columns or () if c not in names]
    if missing:
        raise ValueError(f"columns={list(columns)!r} is not allowed: {missing!r} not among {names!r}")
    for batch in reader.iter_batches(batch_size=chunksize, columns=list(columns) if columns else None):
        yield batch.to_pandas()


def sketch_csv(
    path: str | Path,
    feature_map: FeatureMap,
    *,
    columns: Sequence[str] | None = None,
    chunksize: int = 10_000,
    **read_options: Any,
) -> Sketch:
    """The sketch of a CSV file (or Parquet, by suffix ``.parquet``/``.pq``), read ``chunksize`` rows at a time.

    Parameters
    ----------
    path : str or Path
        The file.
    feature_map : FeatureMap
        The per-sample map.
    columns : sequence of str, optional
        The feature columns (default: all).
    chunksize : int
        Rows read at a time: memory stays ``chunksize x m`` whatever the file's length.
    **read_options
        Passed to ``pandas.read_csv``.

    Returns
    -------
    Sketch
        The sketch of every row; missing values are non-finite and rejected.
    """
    path = Path(path)
    chunksize = check_int("chunksize", chunksize, 1)
    if not path.is_file():
        raise ValueError(f"path={str(path)!r} is not allowed: no such file")
    if columns is not None:
        columns = list(columns)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        chunks = _parquet_chunks(path, columns, chunksize)
    else:
        if columns is not None:
            header = list(pd.read_csv(path, nrows=0, **read_options).columns)
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(f"columns={columns!r} is not allowed: {missing!r} not among {header!r}")
            read_options = {**read_options, "usecols": columns}
        chunks = pd.read_csv(path, chunksize=chunksize, **read_options)
    return sketch_stream(feature_map, chunks, columns=columns)
