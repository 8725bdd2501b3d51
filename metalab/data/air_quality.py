"""Beijing multi-site air quality as few-shot regression tasks: one task per (station, day or week).

The data (Zhang et al., Proc. R. Soc. A 2017; UCI id 501, CC BY 4.0) are twelve hourly CSV files,
``PRSA_Data_<station>_20130301-20170228.csv.gz``, which a user downloads; nothing here ships them.
:func:`find_air_quality_dir` locates them (a path argument, else the search path of
:mod:`metalab.data.locations`: ``$METALAB_DATA``, ``./data``, ``~/.cache/metalab``) and
:func:`load_air_quality_tasks` turns them into per-task tensors:

* rows with a missing value in any used column are dropped;
* features are the weather columns (:data:`DEFAULT_FEATURES`) and, by default, a one-hot encoding
  of the wind direction over the 16 compass points in :data:`WIND_DIRECTIONS` order;
* no intercept column is added, because the linear models in this package have none: the
  wind one-hot columns are kept as 0/1 and sum to one on every row, so they span a constant;
* continuous features and the target are standardised with one mean and standard deviation
  pooled over all kept rows of all tasks (no per-task statistics, so tasks stay comparable and a
  task's own mean level is left for the model to explain). The statistics include the rows of
  tasks that :meth:`AirQualityTasks.split` later holds out.
"""

from __future__ import annotations

import os
import pathlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from metalab.data.locations import DATASETS, candidate_dirs, find

SUBDIR = "beijing_air_quality"
FILE_GLOB = DATASETS[SUBDIR].patterns[0]
WIND_DIRECTIONS = (
    "N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE",
    "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW",
)  # fmt: skip
POLLUTANTS = ("PM2.5", "PM10", "SO2", "NO2", "CO", "O3")
WEATHER = ("TEMP", "PRES", "DEWP", "RAIN", "WSPM")
DEFAULT_FEATURES = WEATHER
PERIODS = ("day", "week")


@dataclass
class AirQualityTasks:
    """Regression tasks: ``X[t]`` is ``(m_t, d)`` and ``y[t]`` is ``(m_t,)``, both float64 and standardised.

    ``task_ids[t]`` is ``(station, period)`` with period ``"2014-03-05"`` (day) or ``"2014-W10"``
    (ISO week). The pooled statistics undo the standardisation, ``raw = z * std + mean``; the
    feature statistics cover the continuous columns (the first ones, before the wind one-hot), and
    the target's raw value is log1p(PM2.5) when loaded with ``log_target=True``.

    Examples
    --------
    >>> tasks = AirQualityTasks(
    ...     X=[torch.zeros(3, 2)] * 10, y=[torch.zeros(3)] * 10,
    ...     task_ids=[("Demo", f"2014-03-{day:02d}") for day in range(1, 11)], feature_names=["TEMP", "PRES"],
    ... )
    >>> train, test = tasks.split(test_fraction=0.2, seed=0)
    >>> len(train), len(test), sorted(train.task_ids + test.task_ids) == tasks.task_ids
    (8, 2, True)
    """

    X: list[torch.Tensor]
    y: list[torch.Tensor]
    task_ids: list[tuple[str, str]]
    feature_names: list[str]
    feature_mean: torch.Tensor | None = None
    feature_std: torch.Tensor | None = None
    target_mean: float | None = None
    target_std: float | None = None

    def __len__(self) -> int:
        return len(self.X)

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[AirQualityTasks, AirQualityTasks]:
        """Hold out a random ``test_fraction`` of the tasks (not of the rows); both parts keep task order.

        Parameters
        ----------
        test_fraction : float
            The share of tasks held out, in (0, 1); round(test_fraction · T) tasks.
        seed : int
            Seeds which tasks are held out.

        Returns
        -------
        train, test : AirQualityTasks
            The kept and the held-out tasks, with the pooled statistics of the whole set.

        Raises
        ------
        ValueError
            When ``test_fraction`` is outside (0, 1) or leaves either part empty.
        """
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction={test_fraction!r} is not allowed: it must lie in (0, 1)")
        n = len(self)
        n_test = int(round(test_fraction * n))
        if n_test < 1 or n_test > n - 1:
            raise ValueError(
                f"test_fraction={test_fraction!r} of {n} tasks leaves an empty part: "
                "load more tasks or change test_fraction"
            )
        order = np.random.default_rng(seed).permutation(n)
        return self._subset(np.sort(order[n_test:])), self._subset(np.sort(order[:n_test]))

    def _subset(self, idx: np.ndarray) -> AirQualityTasks:
        return replace(
            self,
            X=[self.X[i] for i in idx],
            y=[self.y[i] for i in idx],
            task_ids=[self.task_ids[i] for i in idx],
        )


def find_air_quality_dir(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The folder holding the CSV files, or ``None``.

    Looks only at ``path`` when given, else along :func:`metalab.data.locations.search_roots`
    (``$METALAB_DATA``, ``./data``, ``~/.cache/metalab``); each may be the folder itself or a parent
    holding ``beijing_air_quality/``.

    Parameters
    ----------
    path : str or path-like, optional
        The folder, or its parent; None searches the search path.

    Returns
    -------
    pathlib.Path or None
        The first candidate folder (a root, then its ``beijing_air_quality/``) holding a
        ``PRSA_Data_*.csv.gz`` file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as parent:
    ...     folder = pathlib.Path(parent, "beijing_air_quality")
    ...     folder.mkdir()
    ...     folder.joinpath("PRSA_Data_Demo_20130301-20170228.csv.gz").touch()
    ...     found = [find_air_quality_dir(parent), find_air_quality_dir(folder), find_air_quality_dir(folder / "x")]
    >>> found == [folder, folder, None]  # the parent, the folder itself; a folder without the files
    True
    """
    return find(SUBDIR, path)


def load_air_quality_tasks(
    path: str | os.PathLike | None = None,
    *,
    period: str = "day",
    stations: Iterable[str] | None = None,
    features: Sequence[str] = DEFAULT_FEATURES,
    wind_direction: bool = True,
    target: str = "PM2.5",
    log_target: bool = False,
    min_samples: int = 8,
    max_samples: int | None = None,
    max_tasks: int | None = None,
    years: Iterable[int] | None = None,
    seed: int = 0,
) -> AirQualityTasks:
    """Load the data as one regression task per (station, ``period``); see the module docstring.

    ``features`` may name any weather or pollutant column but ``target``; ``stations`` and ``years``
    (the calendar year of each row) restrict the rows used; ``log_target`` models log1p of the target
    (PM2.5 is heavy tailed). Tasks with fewer than ``min_samples`` rows
    are dropped; ``max_tasks`` keeps a random subset of the tasks and ``max_samples`` a random subset
    of each task's rows (in time order), both drawn from ``seed``. Tasks are ordered by station, then time.

    Parameters
    ----------
    path : str or path-like, optional
        The folder of the CSV files or its parent; None searches ``$METALAB_DATA``, ``./data``,
        ``~/.cache/metalab`` (:mod:`metalab.data.locations`).
    period : {"day", "week"}
        One task per station and calendar day, or per station and ISO week.
    stations : iterable of str, optional
        Station names (as in the file names); None uses all.
    features : sequence of str
        Weather or pollutant columns used as features (not ``target``).
    wind_direction : bool
        Append the 16 one-hot wind-direction columns.
    target : str
        The pollutant column to predict.
    log_target : bool
        Model log1p(target).
    min_samples : int
        Drop tasks with fewer complete rows (>= 1).
    max_samples : int, optional
        Keep at most this many random rows per task (>= ``min_samples``).
    max_tasks : int, optional
        Keep at most this many random tasks (>= 1).
    years : iterable of int, optional
        Calendar years to keep; None keeps all.
    seed : int
        Seeds the task and row subsets.

    Returns
    -------
    AirQualityTasks
        Standardised per-task ``X`` (m_t, d) and ``y`` (m_t,), the task ids, the feature names and the
        pooled statistics.

    Raises
    ------
    FileNotFoundError
        When no ``PRSA_Data_*.csv.gz`` file is found (the message says where it looked).
    ValueError
        When an argument names an unknown column, station or year, is out of range, or no task keeps
        ``min_samples`` rows; when a file is not a readable gzip CSV, lacks a used column, or holds a
        non-numeric or infinite feature or target value.

    Examples
    --------
    One station over two days, written in the UCI layout (only the columns the loader reads):

    >>> import tempfile
    >>> columns = ["year", "month", "day", "hour", "PM2.5", "TEMP", "PRES", "DEWP", "RAIN", "WSPM", "wd", "station"]
    >>> rows = [(2014, 3, 1 + h // 24, h % 24, 50 + h, h % 7, 1010, h % 5, 0, h % 3, "N", "Demo") for h in range(48)]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     file = pathlib.Path(folder, "PRSA_Data_Demo_20130301-20170228.csv.gz")
    ...     pd.DataFrame(rows, columns=columns).to_csv(file, index=False)
    ...     tasks = load_air_quality_tasks(folder)
    >>> tasks.task_ids
    [('Demo', '2014-03-01'), ('Demo', '2014-03-02')]
    >>> tuple(tasks.X[0].shape), tasks.feature_names[:5]  # 5 weather columns, then 16 wind one-hots
    ((24, 21), ['TEMP', 'PRES', 'DEWP', 'RAIN', 'WSPM'])
    >>> abs(float(torch.cat(tasks.y).mean())) < 1e-12  # standardised over all kept rows
    True
    """
    features = list(features)
    _check_arguments(period, features, wind_direction, target, min_samples, max_samples, max_tasks)
    files = _station_files(path)
    if stations is not None:
        stations = [stations] if isinstance(stations, str) else list(stations)
        _check_choices("stations", stations, sorted(files))
        files = {s: files[s] for s in stations}

    frame = pd.concat([_read_station(f, features, target, wind_direction) for f in files.values()])
    if years is not None:
        years = list(years)
        _check_choices("years", years, sorted(frame["year"].unique().tolist()))
        frame = frame[frame["year"].isin(years)]

    frame, station, label = _sort_and_label(frame, period)
    starts, stops = _task_bounds(station, label, min_samples)
    if len(starts) == 0:
        raise ValueError(
            f"no task has min_samples={min_samples} complete rows: lower min_samples or widen stations/years"
        )
    rng = np.random.default_rng(seed)
    if max_tasks is not None and max_tasks < len(starts):
        keep = np.sort(rng.choice(len(starts), size=max_tasks, replace=False))
        starts, stops = starts[keep], stops[keep]
    rows = [_sample_rows(a, b, max_samples, rng) for a, b in zip(starts, stops, strict=True)]

    kept = np.concatenate(rows)
    X, names, n_continuous = _design_matrix(frame, features, wind_direction)
    y = frame[target].to_numpy(np.float64)
    if log_target:
        y = np.log1p(y)
    x_mean, x_std = _pooled_stats(X[kept, :n_continuous])
    y_mean, y_std = _pooled_stats(y[kept])
    X[:, :n_continuous] = (X[:, :n_continuous] - x_mean) / x_std
    y = (y - y_mean) / y_std

    return AirQualityTasks(
        X=[torch.from_numpy(X[r]) for r in rows],
        y=[torch.from_numpy(y[r]) for r in rows],
        task_ids=[(str(station[a]), str(label[a])) for a in starts],
        feature_names=names,
        feature_mean=torch.from_numpy(x_mean),
        feature_std=torch.from_numpy(x_std),
        target_mean=float(y_mean),
        target_std=float(y_std),
    )


def _check_arguments(period, features, wind_direction, target, min_samples, max_samples, max_tasks) -> None:
    _check_choices("period", period, PERIODS)
    _check_choices("target", target, POLLUTANTS)
    allowed = [c for c in POLLUTANTS + WEATHER if c != target]
    _check_choices("features", features, allowed)
    if len(set(features)) != len(features):
        raise ValueError(f"features={features!r} is not allowed: a feature is repeated")
    if not features and not wind_direction:
        raise ValueError("features=[] is not allowed with wind_direction=False: there would be no features")
    if min_samples < 1:
        raise ValueError(f"min_samples={min_samples!r} is not allowed: it must be at least 1")
    if max_samples is not None and max_samples < min_samples:
        raise ValueError(f"max_samples={max_samples!r} is not allowed: it must be at least min_samples={min_samples}")
    if max_tasks is not None and max_tasks < 1:
        raise ValueError(f"max_tasks={max_tasks!r} is not allowed: it must be at least 1")


def _check_choices(argument: str, value, allowed: Sequence) -> None:
    unknown = [v for v in (value if isinstance(value, list) else [value]) if v not in allowed]
    if unknown:
        raise ValueError(f"{argument}={value!r} is not allowed: {unknown} not in {list(allowed)}")


def _station_files(path) -> dict[str, pathlib.Path]:
    """Station name -> CSV file, from names ``PRSA_Data_<station>_<dates>.csv.gz``."""
    folder = find_air_quality_dir(path)
    if folder is None:
        looked = ", ".join(map(str, candidate_dirs(path, (SUBDIR,))))
        raise FileNotFoundError(
            f"no Beijing air-quality files ({FILE_GLOB}) found; looked in {looked}. "
            "Download the UCI data set 501 and pass its folder as `path`, set METALAB_DATA to it "
            f"(or to a parent holding {SUBDIR}/), or put it in ./data/{SUBDIR} or ~/.cache/metalab/{SUBDIR}. "
            "The dashboard and notebooks fall back to generated data."
        )
    return {f.name.split("_")[2]: f for f in sorted(folder.glob(FILE_GLOB))}


def _read_station(file: pathlib.Path, features, target, wind_direction) -> pd.DataFrame:
    """The used columns of one file, rows with a missing value dropped, in file (time) order."""
    required = ["year", "month", "day", "station", *features, target] + (["wd"] if wind_direction else [])
    try:
        frame = pd.read_csv(file, usecols=lambda c: c in required)
    except (
        OSError,
        EOFError,
        zlib.error,
        UnicodeDecodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
    ) as error:
        # BadGzipFile (an OSError), a truncated stream (EOFError), an empty or garbled table
        raise ValueError(f"{file} is not a readable air-quality table (gzip-compressed CSV): {error}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{file} lacks the required columns {missing}")
    frame = frame[required].dropna()
    numeric = [*features, target]
    for column in numeric:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ValueError(f"{file}: column {column!r} holds values that are not numbers")
        if np.isinf(frame[column].to_numpy(np.float64)).any():
            raise ValueError(f"{file}: column {column!r} holds an infinite value")
    if wind_direction:
        unknown = sorted(frame.loc[~frame["wd"].isin(WIND_DIRECTIONS), "wd"].unique())
        if unknown:
            raise ValueError(f"{file} has wind directions {unknown} outside {list(WIND_DIRECTIONS)}")
    return frame


def _sort_and_label(frame: pd.DataFrame, period: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows sorted by station and date (stably, so hours stay in order), with each row's station and
    period label (``2014-03-05`` or ISO week ``2014-W10``)."""
    dates = pd.to_datetime(frame[["year", "month", "day"]]).to_numpy()
    station = frame["station"].to_numpy(str)
    order = np.lexsort((dates, station))
    frame, dates, station = frame.iloc[order], pd.DatetimeIndex(dates[order]), station[order]
    if period == "day":
        codes, uniques = pd.factorize(dates)
        labels = uniques.strftime("%Y-%m-%d")
    else:
        iso = dates.isocalendar()
        codes, uniques = pd.factorize(iso["year"].to_numpy() * 100 + iso["week"].to_numpy())
        labels = [f"{k // 100}-W{k % 100:02d}" for k in uniques]
    return frame, station, np.asarray(labels, dtype=str)[codes]


def _task_bounds(station: np.ndarray, label: np.ndarray, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop of each run of equal (station, label) rows (one task each, the rows being sorted)
    that has at least ``min_samples`` rows."""
    change = (station[1:] != station[:-1]) | (label[1:] != label[:-1])
    starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    stops = np.concatenate([starts[1:], [len(station)]])
    big = stops - starts >= min_samples
    return starts[big], stops[big]


def _sample_rows(start: int, stop: int, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_samples is None or stop - start <= max_samples:
        return np.arange(start, stop)
    return start + np.sort(rng.choice(stop - start, size=max_samples, replace=False))


def _design_matrix(frame: pd.DataFrame, features, wind_direction) -> tuple[np.ndarray, list[str], int]:
    """Continuous features first, then the wind one-hot; also the names and the continuous count."""
    columns = [frame[features].to_numpy(np.float64)]
    names = list(features)
    if wind_direction:
        codes = pd.Categorical(frame["wd"], categories=WIND_DIRECTIONS).codes
        columns.append(np.eye(len(WIND_DIRECTIONS))[codes])
        names += [f"wd_{d}" for d in WIND_DIRECTIONS]
    return np.concatenate(columns, axis=1), names, len(features)


def _pooled_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over rows; a constant column gets std 1 so it maps to zero."""
    mean, std = values.mean(axis=0), values.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)
