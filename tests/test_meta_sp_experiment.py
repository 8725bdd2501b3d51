"""The Meta-SP experiment's record stream and the CLI that writes it to files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from metalab.cli import main
from metalab.core import ConfigError, collect
from metalab.experiments import get_experiment
from metalab.experiments.meta_sp import (
    ALL_METHODS,
    MetaSPConfig,
    noise_floor_slopes,
    run,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_convergence_stream_is_deterministic_and_meta_sp_reaches_the_noise_floor():
    config = MetaSPConfig(parts=("convergence",), methods=("meta_sp", "mom"), max_iter=200)
    first, second = collect(run(config)), collect(run(config))
    assert first.drop(columns="seconds").equals(second.drop(columns="seconds"))
    meta_sp = first[first["method"] == "meta_sp"].sort_values("step")
    assert meta_sp["step"].tolist() == list(range(len(meta_sp)))
    assert meta_sp["sin_theta"].iloc[-1] < 0.1 < meta_sp["sin_theta"].iloc[1]
    mom = first[first["method"] == "mom"]
    assert len(mom) == 1 and mom["sin_theta"].iloc[0] > meta_sp["sin_theta"].iloc[-1]


def test_progress_rises_to_one():
    config = MetaSPConfig(parts=("samples",), methods=("meta_sp",), samples_grid=(6, 12), repeats=1)
    progress = [record.progress for record in run(config)]
    assert progress == sorted(progress) and progress[-1] == 1.0 and progress[0] < 1.0


def test_samples_part_shows_meta_sp_ahead_of_mom_and_anil_when_data_are_scarce():
    config = MetaSPConfig(parts=("samples",), methods=("meta_sp", "mom", "anil"), samples_grid=(6,), repeats=2)
    means = collect(run(config)).groupby("method")["sin_theta"].mean()
    assert means["meta_sp"] < means["mom"] and means["meta_sp"] < means["anil"]


def test_rank_part_fits_s_minus_one_to_s_plus_one():
    frame = collect(run(MetaSPConfig(parts=("rank",), repeats=1)))
    by_rank = frame.set_index("fitted_rank")["sin_theta"]
    assert sorted(by_rank.index) == [2, 3, 4]
    assert by_rank[2] > 0.5  # one true direction is necessarily missed
    assert by_rank[3] < 0.2 and by_rank[4] < 0.2  # an extra direction still contains the truth


def test_noise_floor_grows_linearly_in_sigma():
    config = MetaSPConfig(
        parts=("noise_floor",),
        noise_grid=(0.05, 0.2, 0.8),
        dim_grid=(20,),
        tasks_grid=(100,),
        floor_samples_grid=(10,),
        repeats=1,
        max_iter=300,
    )
    slopes = noise_floor_slopes(collect(run(config)))
    assert slopes["noise"] == pytest.approx(1.0, abs=0.25)


def test_config_rejects_impossible_combinations():
    with pytest.raises(ConfigError, match=r"rank=20 is not allowed: an integer in 1..min\(n_tasks, d\)-1 = 1..19"):
        MetaSPConfig(rank=20, d=20)
    with pytest.raises(ConfigError, match=r"methods='maml' is not allowed: one of"):
        MetaSPConfig(methods=("meta_sp", "maml"))
    with pytest.raises(ConfigError, match=r"n_samples=0 is not allowed"):
        MetaSPConfig(n_samples=0)
    assert get_experiment("meta_sp").config is MetaSPConfig
    with pytest.raises(ValueError, match=r"experiment=.nope. is not known: one of .*meta_sp"):
        get_experiment("nope")


def test_cli_writes_records_json_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "meta_sp",
            "--quiet",
            "--out",
            str(out),
            "--set",
            "parts=convergence,samples",
            "--set",
            "samples_grid=6,12",
            "--set",
            "repeats=1",
        ]
    )
    assert code == 0
    frame = pd.read_csv(out / "records.csv")
    assert {"step", "method", "n_samples", "sin_theta"} <= set(frame.columns)
    assert set(frame["method"]) == set(ALL_METHODS)
    assert set(frame["n_samples"]) == {6, 10, 12}
    payload = json.loads((out / "records.json").read_text())
    assert payload["config"]["samples_grid"] == [6, 12] and len(payload["records"]) == len(frame)
    assert (out / "convergence.png").stat().st_size > 10_000 and (out / "samples.png").exists()
    assert "wrote" in capsys.readouterr().out


def test_cli_explains_bad_settings(tmp_path, capsys):
    assert main(["run", "meta_sp", "--out", str(tmp_path), "--set", "rank=99"]) == 2
    assert "rank=99 is not allowed" in capsys.readouterr().err
    assert main(["run", "meta_sp", "--out", str(tmp_path), "--set", "colour=red"]) == 2
    assert "colour='red' is not allowed: a field of MetaSPConfig" in capsys.readouterr().err
    assert main(["run", "meta_sp", "--out", str(tmp_path), "--set", "rank"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_cli_show_lists_every_setting(capsys):
    assert main(["show", "meta_sp"]) == 0
    shown = capsys.readouterr().out
    for field in MetaSPConfig.field_names():
        assert f"  {field} = " in shown


def test_air_quality_part_is_skipped_with_a_one_line_warning_without_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("METALAB_DATA", raising=False)
    with pytest.warns(UserWarning, match=r"air-quality data not found"):
        frame = collect(run(MetaSPConfig(parts=("air_quality",))))
    assert frame.empty
    assert main(["run", "meta_sp", "--set", "parts=air_quality", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "metalab: warning: air-quality data not found" in err and "units = " not in err


def test_air_quality_part_with_a_wrong_data_path_is_an_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"data_path=.* holds no Beijing air-quality files"):
        next(run(MetaSPConfig(parts=("air_quality",), data_path=str(tmp_path))))
    assert (
        main(["run", "meta_sp", "--set", "parts=air_quality", "--set", f"data_path={tmp_path}", "--out", str(tmp_path)])
        == 2
    )
    assert "holds no Beijing air-quality files" in capsys.readouterr().err


@pytest.mark.realdata
def test_air_quality_part_on_the_real_data():
    if not (SHARED_DATA / "beijing_air_quality").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the air-quality data is missing from {SHARED_DATA} in CI")
        pytest.skip(f"needs the Beijing air-quality data in {SHARED_DATA}")
    config = MetaSPConfig(parts=("air_quality",), data_path=str(SHARED_DATA), aq_max_tasks=200)
    frame = collect(run(config)).set_index("method")
    assert set(frame.index) == (set(ALL_METHODS) - {"oracle"}) | {"ridge", "zero"}
    # a shared 3-dimensional subspace predicts held-out station-days better than their mean does
    assert frame.loc["meta_sp", "few_shot_mse"] < frame.loc["zero", "few_shot_mse"]
    assert (frame["n_test_tasks"] == frame["n_test_tasks"].iloc[0]).all()
