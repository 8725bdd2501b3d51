"""The experiment contract, checked on every registered experiment (in the spirit of scikit-learn's
``check_estimator``): the quick preset runs through the CLI and writes its files; every record carries
its part's declared columns and its x value as ``step``; the same seed gives the same records; the
figures draw from the written records alone; invalid settings raise a ConfigError naming the field."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
from replaced_run import replaced_run

from metalab.cli import main
from metalab.core import ConfigError, Record
from metalab.experiments import EXPERIMENTS, get_experiment
from metalab.experiments.base import Experiment, Paper


@pytest.fixture(scope="module", params=sorted(EXPERIMENTS))
def quick_run(request, tmp_path_factory):
    """(experiment, output folder, records) of one quick-preset run through ``metalab run``."""
    experiment = get_experiment(request.param)
    out = tmp_path_factory.mktemp(request.param)
    records: list[Record] = []
    original = experiment.run

    def recording_run(config):
        for record in original(config):
            records.append(record)
            yield record

    # the CLI runs the experiment object get_experiment returns; watch its records on the way through
    with replaced_run(experiment, recording_run):
        assert main(["run", request.param, "--out", str(out), "--quiet"]) == 0
    return experiment, out, records


def test_experiment_declares_the_contract(quick_run):
    experiment, _, _ = quick_run
    assert isinstance(experiment, Experiment)
    assert isinstance(experiment.paper, Paper) and experiment.paper.title and experiment.paper.claims
    quick = experiment.estimate(experiment.config.preset("quick"))
    assert quick.bytes > 0 and quick.seconds > 0 and quick.driver
    assert experiment.paper.markdown().startswith(f"# {experiment.paper.title}")
    assert {"quick", "paper"} <= set(experiment.config.presets)
    assert len(set(experiment.part_names)) == len(experiment.parts)
    for part in experiment.parts:
        assert set(part.volatile) <= set(part.columns), part.name
        assert part.x is None or part.x in part.columns, part.name
    # the paper preset is a valid configuration too
    experiment.config.preset("paper")


def test_every_record_keeps_its_part_declaration(quick_run):
    experiment, _, records = quick_run
    assert records, "the quick preset produced no records"
    for record in records:
        experiment.part(record.part).check_record(record)
    progress = [r.progress for r in records]
    assert all(p is not None and 0 <= p <= 1 for p in progress)
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_the_cli_writes_records_config_and_figures(quick_run):
    experiment, out, records = quick_run
    frame = pd.read_csv(out / "records.csv")
    assert len(frame) == len(records)
    payload = json.loads((out / "records.json").read_text())
    assert payload["experiment"] == experiment.name and payload["config"]["seed"] == 0
    assert len(payload["records"]) == len(records)
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(experiment.figures(frame))


def test_figures_draw_from_the_written_records_alone(quick_run):
    experiment, out, _ = quick_run
    frame = pd.read_csv(out / "records.csv")  # no config, no objects: only what the CLI wrote
    figures = experiment.figures(frame)
    assert figures, "no figure from the quick preset's records"
    for figure in figures.values():
        assert figure.axes


def _stable_rows(experiment: Experiment, records: list[Record], part: str) -> list[dict]:
    volatile = set(experiment.part(part).volatile)
    rows = []
    for record in records:
        if record.part == part:
            values = {k: v for k, v in record.values.items() if k not in volatile}
            rows.append({"method": record.method, "step": record.step, **values})
    return rows


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_same_seed_gives_the_same_records(quick_run):
    """The first part of a second run with the same config (same process, so the same threads and
    kernels) repeats the first run's records exactly, machine measurements aside."""
    experiment, _, records = quick_run
    config = experiment.config.preset("quick")
    first = next(name for name in experiment.part_names if name in config.parts)
    again = list(experiment.run(config.replace(parts=(first,))))
    want, got = _stable_rows(experiment, records, first), _stable_rows(experiment, again, first)
    assert len(want) == len(got) > 0
    for expected, actual in zip(want, got, strict=True):
        assert expected.keys() == actual.keys()
        different = [k for k in expected if not _same(expected[k], actual[k])]
        assert not different, f"{first}: {different} differ: {expected} vs {actual}"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_invalid_settings_name_the_field(name):
    config = get_experiment(name).config
    with pytest.raises(ConfigError) as error:
        config.preset("quick", seed=-1)
    assert error.value.field == "seed" and "seed=-1 is not allowed" in str(error.value)
    with pytest.raises(ConfigError) as error:
        config.preset("quick", no_such_setting=1)
    assert error.value.field == "no_such_setting"
    with pytest.raises(ConfigError) as error:
        config.preset("quick", parts=("no_such_part",))
    assert error.value.field == "parts"
    tuple_fields = [f.name for f in dataclasses.fields(config) if config.field_type(f.name)[1]]
    assert "parts" in tuple_fields
