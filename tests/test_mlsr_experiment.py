"""The MLSR experiment's record stream, its figures and the CLI that writes it to files."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from metalab.cli import main
from metalab.core import ConfigError, collect
from metalab.experiments import get_experiment
from metalab.experiments.mlsr import PUBLISHED, MLSRConfig, run
from metalab.plots_mlsr import mlsr_figures

TIMING = ["seconds", "train_seconds"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the machine's cores are shared, and oversubscribed threads slow these small nets badly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sinusoid_frame() -> pd.DataFrame:
    torch.set_num_threads(1)
    config = MLSRConfig.preset(
        "quick",
        parts=("training", "sinusoid", "published"),
        methods=("mlsr", "maml", "maml_fz", "random"),
        inner_steps=(1,),
        eval_tasks=60,
    )
    return collect(run(config))


def test_sinusoid_records_have_the_required_columns_and_methods(sinusoid_frame):
    rows = sinusoid_frame[sinusoid_frame["part"] == "sinusoid"]
    assert {"method", "adapt_steps", "mse", "train_inner_steps", "ci95"} <= set(rows.columns)
    assert set(rows["method"]) == {"mlsr", "maml", "maml_fz", "random"}
    for _, group in rows.groupby("method"):
        assert sorted(group["adapt_steps"].astype(int)) == list(range(11))
    assert (rows["mse"] > 0).all() and rows["mse"].notna().all()
    training = sinusoid_frame[sinusoid_frame["part"] == "training"]
    assert set(training["method"]) == {"mlsr", "maml", "maml_fz"}  # random is not meta-trained
    assert training["step"].max() == 250


def test_meta_trained_maml_beats_random_initialisation_after_ten_steps(sinusoid_frame):
    rows = sinusoid_frame[sinusoid_frame["part"] == "sinusoid"].set_index(["method", "adapt_steps"])["mse"]
    assert rows[("maml", 10)] < 0.8 * rows[("random", 10)]
    assert rows[("mlsr", 10)] < 0.8 * rows[("random", 10)]


def test_published_part_puts_ours_beside_the_published_table(sinusoid_frame):
    rows = sinusoid_frame[sinusoid_frame["part"] == "published"].set_index("adapt_steps")
    assert sorted(rows.index) == [1, 5, 10]
    assert rows["published_mse"].to_dict() == PUBLISHED["maml"]
    assert bool(rows["comparable"].all())  # MAML protocol: K = 10 in training, 5-shot evaluation
    ours = sinusoid_frame[(sinusoid_frame["part"] == "sinusoid") & (sinusoid_frame["method"] == "maml")]
    assert rows.loc[5, "mse"] == pytest.approx(float(ours.set_index("adapt_steps").loc[5, "mse"]))


def test_mlsr_heads_are_sparser_than_maml_fz_heads():
    config = MLSRConfig(
        parts=("diagnostics",),
        methods=("mlsr", "maml_fz"),
        inner_steps=(1,),
        lam=0.3,
        meta_iterations=60,
        widths=(40,),
        eval_tasks=20,
    )
    frame = collect(run(config))
    sparsity = frame[frame["kind"] == "sparsity"].set_index("method")["sparsity"]
    assert sparsity["mlsr"] > 0.05 and sparsity["maml_fz"] < 0.01
    rip = frame[frame["kind"] == "rip"]
    assert len(rip) == 1 and 0.0 <= float(rip["coherence"].iloc[0]) <= 1.0 + 1e-9


def test_records_are_deterministic_apart_from_timing():
    config = MLSRConfig(
        parts=("training", "sinusoid", "fits"),
        methods=("mlsr", "maml"),
        inner_steps=(1,),
        meta_iterations=20,
        eval_tasks=10,
        n_fits=1,
        fit_points=10,
        adapt_steps=3,
    )
    first, second = collect(run(config)), collect(run(config))
    first, second = (f.drop(columns=[c for c in TIMING if c in f]) for f in (first, second))
    pd.testing.assert_frame_equal(first, second)
    fits = first[first["part"] == "fits"]
    assert set(fits["adapt_steps"]) == {-1, 0, 1, 3} and {"x", "y_true", "y_pred"} <= set(fits.columns)


def test_digits_part_starts_at_chance_and_figures_are_drawn(sinusoid_frame):
    config = MLSRConfig(
        parts=("digits",),
        methods=("maml", "random"),
        inner_steps=(1,),
        digit_iterations=30,
        eval_tasks=20,
        long_steps=15,
    )
    digits = collect(run(config))
    accuracy = digits.set_index(["method", "adapt_steps"])["accuracy"]
    assert abs(accuracy[("random", 0)] - 0.5) < 0.1  # labels are permuted per task
    assert accuracy[("random", 15)] > 0.6
    assert set(digits["term"]) == {"short", "long"}
    figures = mlsr_figures(pd.concat([sinusoid_frame, digits], ignore_index=True))
    assert {"training", "sinusoid", "digits"} <= set(figures)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"lam": -0.1}, "lam"),
        ({"inner_steps": (0,)}, "inner_steps"),
        ({"meta_iterations": 0}, "meta_iterations"),
        ({"adapt_steps": -1}, "adapt_steps"),
        ({"digits": (3, 3)}, "digits"),
        ({"digit_shots": 150}, "digit_shots"),
        ({"methods": ("mlsr", "reptile")}, "methods"),
        ({"task": "omniglot"}, "task"),
        ({"shots": 0}, "shots"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"^{field}=") as info:
        MLSRConfig.preset("quick", **overrides)
    assert info.value.field == field


def test_cli_writes_records(tmp_path):
    assert get_experiment("mlsr").CONFIG is MLSRConfig
    code = main(
        [
            "run",
            "mlsr",
            "--quiet",
            "--out",
            str(tmp_path),
            "--set",
            "parts=sinusoid",
            "--set",
            "methods=maml,random",
            "--set",
            "inner_steps=1",
            "--set",
            "meta_iterations=20",
            "--set",
            "eval_tasks=10",
        ]
    )
    assert code == 0
    frame = pd.read_csv(tmp_path / "records.csv")
    assert set(frame["method"]) == {"maml", "random"} and (frame["part"] == "sinusoid").all()
    assert (tmp_path / "sinusoid.png").is_file()
