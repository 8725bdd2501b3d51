"""metalab reproduce: resume skips finished units, a different config is refused, provenance is complete,
an interruption keeps whole records; metalab.results reads stored runs with clear errors; and the drift
test re-runs a slice of every stored run in results/ and compares it with the stored records."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from metalab import results
from metalab.cli import main
from metalab.core import Config, Record, param
from metalab.core.cost import Cost
from metalab.core.output import STREAM, read_stream
from metalab.data import locations
from metalab.experiments import get_experiment
from metalab.experiments.base import DRIFT_RTOL, Experiment, Paper, Part, Unit
from metalab.reproduce import compare, drift_slice, reproduce, rerun

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class CountConfig(Config):
    n: int = param(3, ge=1)
    parts: tuple[str, ...] = param(("a", "b"), choices=("a", "b"))
    seed: int = param(0, ge=0)
    presets = {"quick": {}, "paper": {"n": 4}}


class Counting:
    """A two-part experiment whose units count their calls and can raise KeyboardInterrupt mid-unit."""

    def __init__(self):
        self.calls: list[str] = []
        self.interrupt_at: str | None = None

    def units(self, part: str):
        def build(config, context):
            return [Unit(lambda i=i: self.work(part, i, config)) for i in range(config.n)]

        return build

    def work(self, part: str, i: int, config):
        import torch

        self.calls.append(f"{part}/{i}")
        for j in range(2):
            if self.interrupt_at == f"{part}/{i}" and j == 1:
                raise KeyboardInterrupt
            # a draw from the global generator: equal only when the unit is seeded by its name
            yield Record(part, "demo", j, {"j": j, "unit_index": i, "draw": float(torch.rand(()))})

    def experiment(self) -> Experiment:
        paper = Paper("A Paper", "A. Author", "NeurIPS", 2024, "", "Does it count?", ("It counts.",), "Count.")
        parts = tuple(Part(name, x="j", columns=("j", "draw"), units=self.units(name)) for name in ("a", "b"))
        return Experiment(
            "counting", paper, CountConfig, parts, figures=lambda frame: {}, estimate=lambda config: Cost(1e3, 1e-3)
        )


def quiet(line: str) -> None:
    pass


def test_an_interrupted_run_resumes_by_skipping_its_finished_units(tmp_path):
    counting = Counting()
    experiment, config = counting.experiment(), CountConfig(n=3)
    counting.interrupt_at = "b/1"
    with pytest.raises(KeyboardInterrupt):
        reproduce(experiment, tmp_path / "run", config=config, log=quiet)
    assert counting.calls == ["a/0", "a/1", "a/2", "b/0", "b/1"]
    # the stream holds whole lines: the finished units' records and marks, and b/1's first record
    lines = read_stream(tmp_path / "run" / STREAM)
    assert [line["done"] for line in lines if "done" in line] == ["a/0", "a/1", "a/2", "b/0"]
    assert sum("part" in line for line in lines) == 4 * 2 + 1
    with (tmp_path / "run" / STREAM).open("ab") as stream:  # a write cut short by a kill
        stream.write(b'{"unit": "b/1", "part": "b", "meth')

    counting.calls.clear()
    counting.interrupt_at = None
    reproduce(experiment, tmp_path / "run", config=config, log=quiet)
    assert counting.calls == ["b/1", "b/2"]  # b/1 was cut short: it reruns whole
    resumed = pd.read_csv(tmp_path / "run" / "records.csv")

    reproduce(experiment, tmp_path / "whole", config=config, log=quiet)
    whole = pd.read_csv(tmp_path / "whole" / "records.csv")
    assert list(resumed["unit"]) == [f"{p}/{i}" for p in "ab" for i in range(3) for _ in range(2)]
    pd.testing.assert_frame_equal(resumed, whole)

    counting.calls.clear()
    reproduce(experiment, tmp_path / "run", config=config, log=quiet)  # finished: nothing runs again
    assert counting.calls == []


def test_a_different_config_is_refused_unless_restart(tmp_path):
    counting = Counting()
    experiment = counting.experiment()
    reproduce(experiment, tmp_path, config=CountConfig(n=2), log=quiet)
    with pytest.raises(ValueError, match=r"another config \(differing: n\).*--restart"):
        reproduce(experiment, tmp_path, config=CountConfig(n=3), log=quiet)
    reproduce(experiment, tmp_path, config=CountConfig(n=3), restart=True, log=quiet)
    assert len(pd.read_csv(tmp_path / "records.csv")) == 3 * 2 * 2
    assert json.loads((tmp_path / "config.json").read_text())["config"]["n"] == 3


def test_the_cli_refuses_another_config_in_the_folder(tmp_path, capsys):
    folder = tmp_path / "meta_sp"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"experiment": "meta_sp", "fingerprint": "0", "config": {}}))
    assert main(["reproduce", "meta_sp", "--out", str(tmp_path)]) == 2
    assert "--restart" in capsys.readouterr().err


def test_provenance_names_the_code_the_machine_and_the_time(tmp_path):
    reproduce(Counting().experiment(), tmp_path, config=CountConfig(n=1), log=quiet)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    for field in ("git_commit", "git_dirty", "metalab", "torch", "numpy", "python", "platform", "cpu"):
        assert field in provenance
    assert provenance["torch_threads"] >= 1 and provenance["device"] == "cpu" and provenance["gpu"] is None
    assert provenance["started_utc"] <= provenance["finished_utc"]
    assert provenance["wall_seconds"] >= 0 and provenance["cpu_seconds"] >= 0
    assert (provenance["units"], provenance["records"], provenance["sessions"]) == (2, 4, 1)
    # the code is the one the run started from (this checkout's HEAD, as the test runs in it)
    assert provenance["session_commits"] == [provenance["git_commit"]]


def test_provenance_names_the_threads_the_config_computed_with(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class ThreadedConfig(CountConfig):
        threads: int = param(1, ge=0)

    counting = dataclasses.replace(Counting().experiment(), config=ThreadedConfig)
    reproduce(counting, tmp_path, config=ThreadedConfig(n=1, threads=3), log=quiet)
    assert json.loads((tmp_path / "provenance.json").read_text())["torch_threads"] == 3


def test_compare_reports_what_differs_beyond_the_tolerance():
    stored = pd.DataFrame({"unit": ["a/0", "a/0"], "method": ["x", "y"], "error": [1.0, 2.0], "seconds": [1.0, 2.0]})
    close = stored.assign(error=[1.0 + DRIFT_RTOL / 10, 2.0], seconds=[9.0, 9.0])
    assert compare(stored, close, skip=["seconds"]) == []
    problems = compare(stored, stored.assign(error=[1.0, 2.1]), skip=["seconds"])
    assert problems == ["a/0 error (row 1): stored 2.0, now 2.1"]
    assert compare(stored, stored.iloc[:1]) == ["a/0: 2 stored records, 1 now"]


def test_results_errors_name_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "folder", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=f"no stored run of 'meta_sp' in {tmp_path / 'meta_sp'}"):
        results.load("meta_sp")
    reproduce(Counting().experiment(), tmp_path / "counting", config=CountConfig(n=1), log=quiet)
    assert results.available() == ["counting"]
    (tmp_path / "counting" / "provenance.json").write_text("{not json")
    with pytest.raises(ValueError, match="provenance.json is corrupt"):
        results.load("counting")


@pytest.mark.parametrize("paper", results.available())
def test_a_stored_run_agrees_with_the_code(paper, monkeypatch):
    """Re-run the experiment's drift slice of the stored config (a smaller budget for the training
    experiments); every number that does not measure the machine agrees with the stored records within the
    slice's tolerance (1e-7 + 1e-4 |stored| unless it trains).  A run stored on Omniglot re-runs on the
    copy in ../shared/data."""
    stored = results.load(paper)
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("METALAB_DATA", str(SHARED_DATA))
    if "omniglot" in set(stored.frame.get("dataset", ())) and locations.find("omniglot") is None:
        pytest.skip(f"the stored {paper} run used Omniglot, which is not found here (set METALAB_DATA)")
    experiment = get_experiment(paper)
    drift = drift_slice(experiment, stored.config_object())
    fresh = rerun(experiment, drift.config, drift.units)
    volatile = ["progress", *(column for part in experiment.parts for column in part.volatile)]
    sliced = stored.frame[stored.frame["unit"].isin(drift.units)]
    assert len(sliced) > 0
    assert compare(sliced, fresh, skip=volatile, rtol=drift.rtol, atol=drift.atol, prefix=drift.prefix) == []


def test_a_prefix_comparison_reads_the_first_stored_rows_of_each_unit():
    stored = pd.DataFrame({"unit": ["a/0"] * 3, "loss": [3.0, 2.0, 1.0]})
    assert compare(stored, stored.head(2), prefix=True) == []
    assert compare(stored, stored.head(2)) == ["a/0: 3 stored records, 2 now"]
    changed = stored.head(2).assign(loss=[3.0, 2.5])
    assert compare(stored, changed, prefix=True) == ["a/0 loss (row 1): stored 2.0, now 2.5"]


def test_the_meta_sp_page_shows_the_stored_run_with_its_provenance(tmp_path, monkeypatch, app_page):
    experiment = get_experiment("meta_sp")
    config = experiment.config.preset("quick", parts=("convergence", "samples"), methods=("meta_sp", "mom", "anil"))
    reproduce(experiment, tmp_path / "meta_sp", config=config, log=quiet)
    monkeypatch.setattr(results, "folder", lambda: tmp_path)
    at = app_page("meta_sp", 60)(view="Stored paper-scale run").run()
    assert not at.exception
    assert "stored paper-scale run" in at.subheader[0].value.lower()
    assert "metalab reproduce meta_sp" in at.caption[-1].value
    claims = at.dataframe[0].value
    assert "with few samples per task Meta-SP recovers the subspace where MoM and ANIL do not" in set(claims["claim"])
