"""The MLSR experiment's record stream, its figures and the CLI that writes it to files."""

from __future__ import annotations

import sys
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
import torch

from metalab.cli import main
from metalab.core import ConfigError, collect
from metalab.experiments import get_experiment
from metalab.experiments.mlsr import EXPERIMENT, PAPER, PUBLISHED, TITLE, MLSRConfig, run
from metalab.plots.mlsr import mlsr_figures

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


# ---------------------------------------------------------------------------------------------
# The experiment contract


@pytest.fixture(scope="module")
def every_part():
    """Every part, every method, at a tiny size: the records as they stream (Record objects)."""
    torch.set_num_threads(1)
    config = MLSRConfig.preset(
        "quick",
        methods=("mlsr", "maml", "maml_fz", "random", "maml_l1"),
        inner_steps=(1,),
        meta_iterations=20,
        eval_tasks=10,
        n_fits=1,
        fit_points=5,
        adapt_steps=3,
        digit_iterations=10,
        long_steps=5,
        widths=(20, 40),
        diag_iterations=10,
        rl_iterations=3,
        rl_methods=("mlsr", "random"),
        rl_meta_batch=2,
        rl_trajectories=3,
        rl_eval_tasks=3,
        rl_eval_trajectories=3,
        log_every=5,
    )
    return config, list(run(config))


def test_every_record_keeps_its_parts_declaration(every_part):
    _, records = every_part
    assert {r.part for r in records} == set(EXPERIMENT.part_names)
    for record in records:
        EXPERIMENT.part(record.part).check_record(record)  # raises when a column is missing or step is not x


def test_step_is_the_position_along_the_parts_x_axis(every_part):
    config, records = every_part
    fits = [r for r in records if r.part == "fits"]
    assert all(r.step == r.values["x"] for r in fits) and {r.values["adapt_steps"] for r in fits} == {-1, 0, 1, 3}
    evaluated = [r for r in records if r.part == "rl" and r.values["kind"] != "meta_iteration"]
    assert {(r.method, r.step) for r in evaluated} == {("mlsr", config.rl_iterations), ("random", 0)}
    published = [r for r in records if r.part == "published"]  # adapt_steps=3: 'published' adapts 10 steps itself
    assert [r.step for r in published] == [1, 5, 10] and all(np.isfinite(r.values["mse"]) for r in published)


def test_progress_rises_within_every_unit_to_one(every_part):
    _, records = every_part
    progress = [r.progress for r in records]
    assert all(0.0 <= p <= 1.0 for p in progress) and progress[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in pairwise(progress))
    training = [r.progress for r in records if r.part == "training"]
    assert len(set(training)) == len(training) > 10  # each logged iteration reports how far its training is


def test_paper_block_names_the_paper_and_its_claims():
    assert TITLE == PAPER.title == "Meta-learning from sparse recovery" and PAPER.year == 2021
    assert 2 <= len(PAPER.claims) <= 4 and "Lou" in PAPER.citation
    assert EXPERIMENT.part("fits").x == "x" and EXPERIMENT.part("rl").x == "iteration"


@pytest.fixture(scope="module")
def rl_run() -> tuple[MLSRConfig, pd.DataFrame]:
    torch.set_num_threads(1)
    config = MLSRConfig.preset("quick", parts=("rl",), rl_methods=("mlsr", "random"), rl_iterations=25)
    return config, collect(run(config))


def test_rl_records_have_the_expected_columns_and_steps(rl_run):
    config, frame = rl_run
    assert (frame["part"] == "rl").all() and set(frame["kind"]) == {"meta_iteration", "adaptation", "trajectory"}
    training = frame[frame["kind"] == "meta_iteration"]
    assert {"return_before", "return_after", "surrogate", "grad_norm", "status"} <= set(training.columns)
    assert set(training["method"]) == {"mlsr"}  # the random policy is not meta-trained
    assert training["step"].tolist() == list(range(1, 26)) and (training["status"] == "ok").all()
    assert training["iteration"].tolist() == list(range(1, 26))
    adaptation = frame[frame["kind"] == "adaptation"]
    assert {"adapt_steps", "mean_return", "ci95"} <= set(adaptation.columns)
    for _, group in adaptation.groupby("method"):
        assert group["adapt_steps"].astype(int).tolist() == list(range(config.rl_adapt_steps + 1))
    paths = frame[frame["kind"] == "trajectory"]
    assert {"goal_index", "goal_x", "goal_y", "path", "t", "x", "y"} <= set(paths.columns)
    assert set(paths["adapt_steps"].astype(int)) == {0, 1, config.rl_adapt_steps}
    assert set(paths["goal_index"].astype(int)) == set(range(config.rl_goals_shown))


def test_rl_trajectories_follow_the_navigation_dynamics(rl_run):
    config, frame = rl_run
    paths = frame[frame["kind"] == "trajectory"]
    assert (
        paths.groupby("goal_index")[["goal_x", "goal_y"]].nunique().max().max() == 1
    )  # the same goals for all methods
    assert paths[["goal_x", "goal_y"]].abs().max().max() <= 0.5  # goals ~ U[-0.5, 0.5]^2
    for _, path in paths.groupby(["method", "adapt_steps", "goal_index", "path"]):
        path = path.sort_values("t")
        points = path[["x", "y"]].to_numpy()
        assert path["t"].tolist() == list(range(len(path))) and len(path) <= config.rl_horizon + 1
        assert np.allclose(points[0], 0.0)  # every episode starts at the origin
        assert np.abs(np.diff(points, axis=0)).max() <= 0.1 + 1e-6  # velocity clipped to [-0.1, 0.1]^2
        if len(path) < config.rl_horizon + 1:  # ended early: it reached the goal
            goal = path[["goal_x", "goal_y"]].to_numpy()[0]
            assert np.abs(points[-1] - goal).max() < 0.01 + 1e-6


def test_rl_adaptation_improves_the_meta_trained_mlsr_policy(rl_run):
    # measured (seeds 0-3, 25 meta-iterations): MLSR returns -7.1 to -10.8 before adaptation and
    # -5.0 to -7.2 after one recovery; the random policy -9.3 to -10.1 after three steps, MLSR -3.9 to -4.3
    _, frame = rl_run
    returns = frame[frame["kind"] == "adaptation"].set_index(["method", "adapt_steps"])["mean_return"]
    assert returns[("mlsr", 1)] > returns[("mlsr", 0)] + 1.0
    assert returns[("mlsr", 3)] > returns[("random", 3)] + 2.0
    figures = mlsr_figures(frame)
    assert set(figures) == {"rl", "rl_trajectories"}


def test_half_cheetah_without_mujoco_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco", None)
    with pytest.raises(ConfigError, match=r'^rl_env=.*pip install "metalab\[rl\]"') as info:
        MLSRConfig.preset("quick", parts=("rl",), rl_env="halfcheetah_dir")
    assert info.value.field == "rl_env"


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
        ({"rl_lam": -0.1}, "rl_lam"),
        ({"rl_env": "cartpole"}, "rl_env"),
        ({"rl_methods": ("mlsr", "maml_fz")}, "rl_methods"),
        ({"rl_methods": ()}, "rl_methods"),
        ({"rl_inner_steps": 0}, "rl_inner_steps"),
        ({"rl_goals_shown": 11}, "rl_goals_shown"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"^{field}=") as info:
        MLSRConfig.preset("quick", **overrides)
    assert info.value.field == field


def test_cli_writes_records(tmp_path):
    assert get_experiment("mlsr") is EXPERIMENT and EXPERIMENT.config is MLSRConfig
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


# ---------------------------------------------------------------------------------------------
# the cost known before a run


#: configurations whose run, not the interpreter, sets the peak: MAML's per-task parameters in
#: meta-training, and the adaptation of every parameter on the test sinusoids
LARGE = [
    {"parts": ("training",), "methods": ("maml",), "meta_iterations": 3, "inner_steps": (1,), "hidden": 1024},
    {"parts": ("sinusoid",), "methods": ("random",), "hidden": 1024, "eval_tasks": 20, "adapt_steps": 2},
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", LARGE, ids=["maml_training", "test_adaptation"])
def test_memory_estimate_is_within_a_factor_of_two_of_the_measured_peak(overrides):
    from test_cost import measured_extra_bytes

    from metalab.core.cost import MB
    from metalab.core.memory import peak_rss_in_subprocess

    estimate = EXPERIMENT.estimate(MLSRConfig.preset("quick", **overrides)).bytes
    _, measured = peak_rss_in_subprocess(measured_extra_bytes, "mlsr", overrides)
    assert measured > 50 * MB  # the run, not noise, sets the peak
    assert measured / 2 <= estimate <= 2 * measured, f"estimate {estimate / MB:.0f} MB, measured {measured / MB:.0f} MB"


def test_the_estimate_grows_with_the_settings_it_names_and_fits_the_default_views():
    from metalab.core.cost import Budget

    base = MLSRConfig.preset("quick", parts=("training", "sinusoid", "fits", "diagnostics"), inner_steps=(1,))
    small = EXPERIMENT.estimate(base.replace(widths=(40,)))
    assert Budget().refusal(small) is None  # the page's default sinusoid view runs
    longer = EXPERIMENT.estimate(base.replace(widths=(40,), meta_iterations=2500))
    assert longer.seconds > 5 * small.seconds and "meta-iterations" in longer.driver
    wider = EXPERIMENT.estimate(base.replace(widths=(40,), hidden=2048, methods=("maml",)))
    assert wider.bytes > 10 * small.bytes
    navigation = EXPERIMENT.estimate(MLSRConfig.preset("quick", parts=("rl",), rl_iterations=300, rl_trajectories=100))
    assert "trajectories per task" in navigation.driver and Budget().refusal(navigation) is not None
