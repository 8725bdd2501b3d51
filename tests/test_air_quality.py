"""The Beijing air-quality loader: on small files written here, and on the real data in ../shared/data."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from metalab.data.air_quality import (
    DEFAULT_FEATURES,
    WIND_DIRECTIONS,
    AirQualityTasks,
    find_air_quality_dir,
    load_air_quality_tasks,
)

HEADER = (
    '"No","year","month","day","hour","PM2.5","PM10","SO2","NO2","CO","O3",'
    '"TEMP","PRES","DEWP","RAIN","wd","WSPM","station"'
)
WINDS = ("N", "NE", "SW", "ESE")


def write_station(folder: Path, station: str, start: str, days: int, na: dict[str, list[int]] | None = None) -> None:
    """An hourly file in the real layout; ``na`` maps a column to the row numbers (0-based) set to NA."""
    rng = np.random.default_rng(len(station))
    lines = [HEADER]
    for i, t in enumerate(pd.date_range(start, periods=24 * days, freq="h")):
        row = {
            "No": i + 1, "year": t.year, "month": t.month, "day": t.day, "hour": t.hour,
            "PM2.5": rng.uniform(3, 300), "PM10": rng.uniform(5, 400), "SO2": 4, "NO2": 7, "CO": 300,
            "O3": 77, "TEMP": rng.normal(5, 8), "PRES": rng.normal(1015, 10), "DEWP": rng.normal(-5, 8),
            "RAIN": rng.choice([0, 0, 0, 0.4]), "wd": f'"{WINDS[i % len(WINDS)]}"',
            "WSPM": rng.uniform(0, 6), "station": f'"{station}"',
        }  # fmt: skip
        for column, rows in (na or {}).items():
            if i in rows:
                row[column] = "NA"
        lines.append(",".join(str(v) for v in row.values()))
    path = folder / f"PRSA_Data_{station}_20130301-20170228.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Alpha: 2014-03-01 (Sat) .. 03-10, ISO weeks W09 (2 days), W10 (7), W11 (1); 2014-03-05 keeps
    only 4 complete rows (PM2.5 missing at 20 hours), two other rows miss TEMP and wd.
    Beta: 2014-12-29 .. 2015-01-01, all in ISO week 2015-W01."""
    folder = tmp_path / "beijing_air_quality"
    folder.mkdir()
    write_station(folder, "Alpha", "2014-03-01", 10, {"PM2.5": list(range(96, 116)), "TEMP": [3], "wd": [30]})
    write_station(folder, "Beta", "2014-12-29", 4)
    return folder


def test_day_tasks_drop_na_rows_and_small_days(data_dir: Path) -> None:
    tasks = load_air_quality_tasks(data_dir)
    alpha_days = [f"2014-03-{d:02d}" for d in range(1, 11) if d != 5]
    beta_days = ["2014-12-29", "2014-12-30", "2014-12-31", "2015-01-01"]
    assert tasks.task_ids == [("Alpha", d) for d in alpha_days] + [("Beta", d) for d in beta_days]
    assert [len(y) for y in tasks.y] == [23, 23] + [24] * 11
    assert all(
        x.shape == (len(y), 21) and x.dtype == y.dtype == torch.float64 for x, y in zip(tasks.X, tasks.y, strict=True)
    )

    kept_day_5 = load_air_quality_tasks(data_dir, min_samples=4)
    assert ("Alpha", "2014-03-05") in kept_day_5.task_ids and len(kept_day_5) == len(tasks) + 1


def test_week_tasks_use_iso_weeks(data_dir: Path) -> None:
    tasks = load_air_quality_tasks(data_dir, period="week")
    weeks = [("Alpha", "2014-W09"), ("Alpha", "2014-W10"), ("Alpha", "2014-W11"), ("Beta", "2015-W01")]
    assert tasks.task_ids == weeks
    assert [len(y) for y in tasks.y] == [46, 168 - 20, 24, 96]


def test_wind_direction_one_hot(data_dir: Path) -> None:
    tasks = load_air_quality_tasks(data_dir, stations=["Beta"])
    assert tasks.feature_names == list(DEFAULT_FEATURES) + [f"wd_{d}" for d in WIND_DIRECTIONS]
    one_hot = tasks.X[0][:, len(DEFAULT_FEATURES) :]
    expected = torch.zeros(24, 16, dtype=torch.float64)
    expected[torch.arange(24), [WIND_DIRECTIONS.index(WINDS[i % 4]) for i in range(24)]] = 1.0
    assert torch.equal(one_hot, expected)

    plain = load_air_quality_tasks(data_dir, wind_direction=False, features=("TEMP", "O3"))
    assert plain.feature_names == ["TEMP", "O3"] and plain.X[0].shape[1] == 2


def test_pooled_standardisation(data_dir: Path) -> None:
    tasks = load_air_quality_tasks(data_dir)
    X = torch.cat(tasks.X)[:, : len(DEFAULT_FEATURES)]
    y = torch.cat(tasks.y)
    torch.testing.assert_close(X.mean(0), torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(X.std(0, correction=0), torch.ones(5, dtype=torch.float64))
    assert abs(y.mean().item()) < 1e-12 and abs(y.std(correction=0).item() - 1) < 1e-12

    raw = pd.concat(pd.read_csv(f) for f in sorted(data_dir.glob("*.csv.gz"))).dropna()
    raw = raw[raw.groupby(["station", "year", "month", "day"])["No"].transform("size") >= 8]
    assert tasks.target_mean == pytest.approx(raw["PM2.5"].mean())
    assert tasks.feature_mean[0].item() == pytest.approx(raw["TEMP"].mean())

    logged = load_air_quality_tasks(data_dir, log_target=True)
    assert logged.target_mean == pytest.approx(np.log1p(raw["PM2.5"]).mean())


def test_subsampling_is_deterministic(data_dir: Path) -> None:
    a = load_air_quality_tasks(data_dir, max_samples=10, max_tasks=5, seed=3)
    b = load_air_quality_tasks(data_dir, max_samples=10, max_tasks=5, seed=3)
    assert len(a) == 5 and all(len(y) == 10 for y in a.y)
    assert a.task_ids == b.task_ids and all(torch.equal(x, z) for x, z in zip(a.X, b.X, strict=True))
    assert load_air_quality_tasks(data_dir, max_tasks=5, seed=4).task_ids != a.task_ids


def test_years_filter_rows_by_calendar_year(data_dir: Path) -> None:
    tasks = load_air_quality_tasks(data_dir, years=[2014], period="week")
    assert tasks.task_ids[-1] == ("Beta", "2015-W01") and len(tasks.y[-1]) == 72


def test_split_holds_out_disjoint_tasks_deterministically(data_dir: Path) -> None:
    tasks = load_air_quality_tasks(data_dir)
    train, test = tasks.split(test_fraction=0.3, seed=1)
    assert isinstance(train, AirQualityTasks) and len(train) + len(test) == len(tasks) and len(test) == 4
    assert set(train.task_ids).isdisjoint(test.task_ids)
    assert set(train.task_ids) | set(test.task_ids) == set(tasks.task_ids)
    assert train.target_mean == tasks.target_mean and train.feature_names == tasks.feature_names
    assert tasks.split(test_fraction=0.3, seed=1)[1].task_ids == test.task_ids
    assert tasks.split(test_fraction=0.3, seed=2)[1].task_ids != test.task_ids
    with pytest.raises(ValueError, match="test_fraction"):
        tasks.split(test_fraction=1.0)


def test_find_dir_accepts_folder_parent_and_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_air_quality_dir(data_dir) == data_dir
    assert find_air_quality_dir(data_dir.parent) == data_dir
    monkeypatch.delenv("METALAB_DATA", raising=False)
    monkeypatch.chdir(data_dir)  # ./data and ~/.cache/metalab, the rest of the search path, hold nothing
    monkeypatch.setenv("HOME", str(data_dir))
    assert find_air_quality_dir() is None
    monkeypatch.setenv("METALAB_DATA", str(data_dir.parent))
    assert find_air_quality_dir() == data_dir
    assert len(load_air_quality_tasks(stations="Beta")) == 4


def test_missing_data_error_says_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="METALAB_DATA") as error:
        load_air_quality_tasks(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value) and "generated data" in str(error.value)
    monkeypatch.delenv("METALAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"looked in .*/data, .*/\.cache/metalab"):
        load_air_quality_tasks()


def test_missing_column_error_names_file_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "PRSA_Data_Gamma_20130301-20170228.csv.gz"
    broken.write_bytes(gzip.compress(b'"No","year","month","day","PM2.5","TEMP","station"\n1,2014,3,1,4,1.0,"Gamma"\n'))
    with pytest.raises(ValueError, match=r"PRSA_Data_Gamma.*\['PRES', 'DEWP', 'RAIN', 'WSPM', 'wd'\]"):
        load_air_quality_tasks(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "month"}, r"period='month' is not allowed: .*\['day', 'week'\]"),
        ({"target": "PM25"}, r"target='PM25' is not allowed: .*'PM2.5'"),
        ({"features": ("TEMP", "HUMIDITY")}, r"features=\['TEMP', 'HUMIDITY'\] is not allowed: \['HUMIDITY'\]"),
        ({"features": ("TEMP", "PM2.5")}, r"features=.*\['PM2.5'\] not in"),
        ({"stations": ["Alpha", "Gamma"]}, r"stations=.*\['Gamma'\] not in \['Alpha', 'Beta'\]"),
        ({"years": [2020]}, r"years=\[2020\] is not allowed: .*\[2014, 2015\]"),
        ({"min_samples": 25}, r"min_samples=25"),
    ],
)
def test_bad_arguments_name_argument_value_and_choices(data_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_air_quality_tasks(data_dir, **kwargs)


REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def real_dir() -> Path:
    folder = find_air_quality_dir(REAL_DATA)
    if folder is None:
        reason = f"the Beijing air-quality data are not at {REAL_DATA / 'beijing_air_quality'}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI must test on them")
        pytest.skip(reason)
    return folder


@pytest.mark.realdata
def test_real_data_full_load(real_dir: Path) -> None:
    tasks = load_air_quality_tasks(real_dir)
    assert {station for station, _ in tasks.task_ids} == {
        "Aotizhongxin", "Changping", "Dingling", "Dongsi", "Guanyuan", "Gucheng",
        "Huairou", "Nongzhanguan", "Shunyi", "Tiantan", "Wanliu", "Wanshouxigong",
    }  # fmt: skip
    # 1461 days x 12 stations = 17532 possible; about 17440 keep at least 8 complete hours.
    assert 16_000 < len(tasks) <= 17_532
    assert len(tasks.feature_names) == 21
    assert all(torch.isfinite(x).all() and torch.isfinite(y).all() for x, y in zip(tasks.X, tasks.y, strict=True))
    assert 20 < np.mean([len(y) for y in tasks.y]) <= 24


@pytest.mark.realdata
def test_real_data_weeks_and_log_target(real_dir: Path) -> None:
    tasks = load_air_quality_tasks(real_dir, period="week", stations=["Dongsi"], log_target=True, max_samples=48)
    assert 200 < len(tasks) <= 215 and all(len(y) <= 48 for y in tasks.y)
    assert tasks.task_ids[0] == ("Dongsi", "2013-W09")
    assert all(torch.isfinite(y).all() for y in tasks.y)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"this is not gzip", "Not a gzipped file"),
        (gzip.compress(HEADER.encode() + b"\n1,2014,3,1,0,5")[:-12], "not a readable air-quality table"),
        (gzip.compress(b""), "not a readable air-quality table"),
    ],
    ids=["not-gzip", "truncated", "empty"],
)
def test_corrupt_files_are_errors_naming_the_file(data_dir: Path, content: bytes, problem: str) -> None:
    bad = data_dir / "PRSA_Data_Gamma_20130301-20170228.csv.gz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=problem) as error:
        load_air_quality_tasks(data_dir)
    assert str(bad) in str(error.value)


def test_an_infinite_value_is_rejected_not_turned_into_a_column_of_nan(data_dir: Path) -> None:
    station = data_dir / "PRSA_Data_Alpha_20130301-20170228.csv.gz"
    lines = gzip.decompress(station.read_bytes()).decode().splitlines()
    fields = lines[5].split(",")
    fields[11] = "inf"  # TEMP
    lines[5] = ",".join(fields)
    station.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ValueError, match=r"column 'TEMP' holds an infinite value"):
        load_air_quality_tasks(data_dir)
