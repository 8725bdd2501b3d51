"""The memory-reduced meta-learning experiment's record stream, its figures and the CLI that writes it."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from metalab.cli import main
from metalab.core import ConfigError, collect
from metalab.core.cost import GB, MB
from metalab.core.memory import peak_rss_in_subprocess
from metalab.experiments import get_experiment
from metalab.experiments.memory_reduced import (
    ALL_METHODS,
    EXPERIMENT,
    PAPER,
    TITLE,
    MemoryReducedConfig,
    confidence_interval,
    figures,
    memory_ratios,
    run,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TIMING = ["seconds", "seconds_per_task", "train_seconds"]
SMALL = dict(dataset="glyphs", hidden=4, queries=3, timing_repeats=1)


def small(**changes) -> MemoryReducedConfig:
    return MemoryReducedConfig(**{**SMALL, **changes})


def test_memory_part_shows_implicit_flat_and_unrolled_methods_growing_in_k():
    config = small(parts=("memory",), methods=("implicit", "maml", "anil_recompute", "anil"), k_grid=(1, 5, 10))
    frame = collect(run(config))
    graph = frame.pivot_table(index="inner_steps", columns="method", values="graph_mb")
    assert list(graph.index) == [1, 5, 10]
    implicit = graph["implicit"]
    assert implicit.max() <= 1.10 * implicit.min()
    for method in ("maml", "anil_recompute"):
        assert graph[method].is_monotonic_increasing and graph[method].iloc[-1] > 2 * graph[method].iloc[0], method
    assert graph.loc[10, "implicit"] < 0.5 * graph.loc[10, "maml"]
    assert (frame["seconds_per_task"] > 0).all() and frame["cuda_peak_mb"].isna().all()
    assert frame["graph_bytes"].dtype.kind == "i" and set(frame["dataset"]) == {"glyphs"}
    ratios = memory_ratios(frame)
    assert ratios["implicit_vs_maml"] < 0.5 and ratios["implicit_k_max_vs_k_min"] == pytest.approx(1.0, abs=0.1)


def test_process_memory_of_a_fresh_subprocess_grows_with_k_for_maml_and_not_for_the_implicit_method():
    """measure_rss: the peak RSS of one fresh process per record, above the process that only loads the
    batch.  MAML's graph at K=20 (about 17 MB) shows up there; the implicit method's (2.7 MB, flat) does not."""
    config = MemoryReducedConfig(
        dataset="glyphs",
        timing_repeats=1,
        parts=("memory",),
        methods=("implicit", "maml"),
        k_grid=(1, 20),
        measure_rss=True,
    )
    extra = collect(run(config)).pivot_table(index="inner_steps", columns="method", values="rss_extra_mb")
    maml_growth = extra.loc[20, "maml"] - extra.loc[1, "maml"]
    implicit_growth = extra.loc[20, "implicit"] - extra.loc[1, "implicit"]
    assert maml_growth > 8, extra
    assert abs(implicit_growth) < 4, extra
    assert (extra > 0).all().all(), extra


def test_training_part_streams_increasing_steps_and_wall_clock_with_finite_accuracies():
    config = small(parts=("training",), methods=("implicit", "maml"), shots=(1,), meta_iterations=4, eval_every=2)
    frame = collect(run(config))
    for method, rows in frame.groupby("method"):
        assert rows["step"].tolist() == [0, 2, 4], method
        seconds = rows["seconds"].to_numpy()
        assert seconds[0] == 0.0 and np.all(np.diff(seconds) > 0), method
        assert rows["test_accuracy"].between(0, 1).all()
        assert np.isfinite(rows["train_query_loss"].iloc[1:]).all()
    assert set(frame["method"]) == {"implicit", "maml"} and set(frame["shots"]) == {1}


def test_a_diverging_inner_loop_ends_training_with_a_non_finite_record():
    """MAML at inner_lr=100 over 60 steps without ridge overflows within a few meta-iterations: the shared
    loop stops there, and the last record of the unit says so instead of training on zeroed gradients."""
    config = small(
        parts=("training",), methods=("maml",), shots=(1,), inner_lr=100.0, inner_steps=60, l2=0.0,
        meta_iterations=20, eval_every=2,
    )  # fmt: skip
    records = list(run(config))
    assert "non_finite" in records[-1].values["status"].split(",") and records[-1].step < 20
    assert all(r.values["status"] == "ok" for r in records[:-1]) and records[-1].progress == 1.0


def test_cg_part_reports_failure_without_ridge_and_convergence_with_it():
    config = small(parts=("cg",), cg_lams=(0.0, 0.1), cg_max_steps=40, error_k_grid=(1, 20, 200), cg_grid=(1, 5, 40))
    frame = collect(run(config))
    residual = frame[frame["sweep"] == "residual"]
    assert set(residual.columns) >= {"lam", "cg_step", "residual", "status"}
    singular = residual[residual["lam"] == 0.0]
    # 1-shot 5-way: 5 support points against a 5 x (4 + 1) head, so the head Hessian is singular at lambda = 0
    assert int(singular["head_params"].iloc[0]) > int(singular["support"].iloc[0])
    assert singular["failed"].all() and set(singular["status"]) <= {"diverged", "nonpositive_curvature"}
    ridge = residual[residual["lam"] == 0.1].sort_values("cg_step")
    assert not ridge["failed"].any() and ridge["status"].iloc[0] == "converged"
    assert ridge["relative_residual"].iloc[-1] < 1e-8 < ridge["relative_residual"].iloc[0]
    for sweep in ("inner_steps", "cg_steps"):
        errors = frame[frame["sweep"] == sweep].sort_values("step")["hypergrad_error"].to_numpy()
        assert errors[-1] < 0.1 * errors[0], (sweep, errors)


def test_final_part_gives_accuracy_with_a_confidence_interval():
    config = small(parts=("final",), methods=("anil",), shots=(1,), meta_iterations=2, final_episodes=12)
    frame = collect(run(config))
    episodes = frame[frame["benchmark"] == "episodes"]
    assert len(episodes) == 1
    row = episodes.iloc[0]
    assert row["episodes"] == 12 and 0 <= row["accuracy"] <= 1 and 0 < row["ci95"] < 0.5
    assert confidence_interval(np.array([0.0, 1.0])) == pytest.approx(1.96 * math.sqrt(0.5) / math.sqrt(2))


def test_same_seed_gives_the_same_records_except_timings():
    config = small(
        parts=("memory", "training"), methods=("implicit", "anil"), shots=(1,), k_grid=(1, 3), meta_iterations=2
    )
    first, second = collect(run(config)), collect(run(config))
    keep = [c for c in first.columns if c not in TIMING + ["progress"]]
    pd.testing.assert_frame_equal(first[keep], second[keep])
    other = collect(run(config.replace(seed=1)))
    assert not np.allclose(first["test_accuracy"].dropna(), other["test_accuracy"].dropna())


def test_config_errors_name_the_field_the_value_and_what_is_allowed(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"ways=7 is not allowed: at most 5, the number of test classes"):
        MemoryReducedConfig(dataset="digits", ways=7)
    with pytest.raises(ConfigError, match=r"inner_steps=-1 is not allowed: a finite number >= 0"):
        MemoryReducedConfig(inner_steps=-1)
    with pytest.raises(ConfigError, match=r"cg_steps=-2 is not allowed"):
        MemoryReducedConfig(cg_steps=-2)
    with pytest.raises(ConfigError, match=r"prox=10.0 is not allowed: < 2 / inner_lr = 10 for iMAML"):
        MemoryReducedConfig(methods=("implicit", "imaml"), inner_lr=0.2, prox=10.0)
    assert MemoryReducedConfig(methods=("implicit",), inner_lr=0.2, prox=10.0).prox == 10.0  # iMAML alone reads prox
    with pytest.raises(ConfigError, match=r"l2=-0.1 is not allowed: a finite number >= 0"):
        MemoryReducedConfig(l2=-0.1)
    with pytest.raises(ConfigError, match=r"k_grid=-5 is not allowed"):
        MemoryReducedConfig(k_grid=(1, -5))
    with pytest.raises(ConfigError, match=r"methods='protonet' is not allowed: one of"):
        MemoryReducedConfig(methods=("implicit", "protonet"))
    with pytest.raises(ConfigError, match=r"shots=19 is not allowed: shots \+ queries <= 20"):
        MemoryReducedConfig(shots=(1, 19))
    with pytest.raises(ConfigError, match=r"dataset='imagenet' is not allowed"):
        MemoryReducedConfig(dataset="imagenet")
    monkeypatch.delenv("METALAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"dataset='omniglot' was asked for"):
        collect(run(MemoryReducedConfig(dataset="omniglot", data_path=str(tmp_path), parts=("memory",))))
    assert get_experiment("memory_reduced") is EXPERIMENT and EXPERIMENT.config is MemoryReducedConfig


def test_imaml_step_size_bound_is_a_config_error_on_prox_from_the_library_check():
    """The library refuses inner_lr·prox >= 2 with a plain ValueError; the config turns it into a ConfigError
    on prox whose allowed text states the bound, so the dashboard can name the control."""
    with pytest.raises(ConfigError) as error:
        MemoryReducedConfig(methods=("imaml",), inner_lr=0.5, prox=4.0)
    assert error.value.field == "prox" and error.value.value == 4.0
    assert error.value.allowed.startswith("< 2 / inner_lr = 4 for iMAML")
    assert isinstance(error.value.__cause__, ValueError) and not isinstance(error.value.__cause__, ConfigError)
    assert MemoryReducedConfig(methods=("imaml",), inner_lr=0.5, prox=3.9).prox == 3.9


def test_auto_dataset_falls_back_to_glyphs_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("METALAB_DATA", raising=False)
    config = MemoryReducedConfig(
        **{**SMALL, "dataset": "auto"}, data_path=str(tmp_path), parts=("memory",), methods=("implicit",), k_grid=(1,)
    )
    assert set(collect(run(config))["dataset"]) == {"glyphs"}


def test_cli_writes_the_memory_records_and_figure(tmp_path):
    out = tmp_path / "run"
    small_net = ["--set", "dataset=glyphs", "--set", "hidden=4", "--set", "queries=3"]
    assert main(["run", "memory_reduced", "--quiet", "--out", str(out), "--set", "parts=memory", *small_net]) == 0
    frame = pd.read_csv(out / "records.csv")
    assert {"method", "inner_steps", "graph_mb", "seconds_per_task"} <= set(frame.columns)
    assert set(frame["method"]) == set(ALL_METHODS)
    assert frame["inner_steps"].nunique() >= 3 and frame["inner_steps"].max() >= 20
    assert (out / "memory.png").stat().st_size > 10_000


def test_figures_cover_every_part_present():
    config = small(
        parts=("memory", "training", "cg", "final"),
        methods=("implicit",),
        shots=(1,),
        k_grid=(1, 2),
        meta_iterations=1,
        final_episodes=4,
        cg_lams=(0.0, 0.1),
        cg_max_steps=10,
        error_k_grid=(1, 5),
        cg_grid=(1, 5),
        data_path=str(SHARED_DATA / "nowhere"),
    )
    made = EXPERIMENT.figures(collect(run(config)))  # the records alone
    assert {"memory", "training", "cg", "final"} <= set(made)
    assert all(isinstance(fig, Figure) for fig in made.values())
    assert figures(collect([])) == {}


def test_every_part_keeps_its_declaration_and_the_progress_grows_within_units():
    """step is the part's x value (K, the meta-iteration, the swept count, 0 for final), every record carries
    the declared columns, and the progress rises to 1 with fractions inside the training units."""
    config = small(
        methods=("implicit", "anil"), shots=(1,), k_grid=(1, 3), meta_iterations=4, eval_every=1,
        final_episodes=4, cg_lams=(0.1,), cg_max_steps=5, error_k_grid=(1, 5), cg_grid=(1, 5),
    )  # fmt: skip
    records = list(run(config))
    assert {r.part for r in records} == set(EXPERIMENT.part_names)
    for record in records:
        EXPERIMENT.part(record.part).check_record(record)
    progress = [r.progress for r in records]
    assert progress == sorted(progress) and progress[-1] == 1.0
    training = [r for r in records if r.part == "training" and r.method == "implicit"]
    assert [r.step for r in training] == [0, 1, 2, 3, 4]
    within = [r.progress for r in training]
    assert len(set(within)) == len(within), "each evaluation of a training unit moves the bar"
    cg = [r for r in records if r.part == "cg"]
    assert {r.values["sweep"] for r in cg} == {"residual", "inner_steps", "cg_steps"}
    assert all(r.step == r.values["inner_steps"] for r in cg if r.values["sweep"] == "inner_steps")
    assert all(r.step == r.values["cg_steps"] for r in cg if r.values["sweep"] == "cg_steps")


def test_the_paper_block_names_the_paper_and_its_claims():
    assert TITLE == PAPER.title == "Memory-Reduced Meta-Learning with Guaranteed Convergence"
    assert PAPER.arxiv == "2412.12030" and PAPER.year == 2025 and 2 <= len(PAPER.claims) <= 4
    assert PAPER.url == "https://arxiv.org/abs/2412.12030"
    assert EXPERIMENT.name == "memory_reduced" and EXPERIMENT.paper is PAPER


@pytest.mark.realdata
def test_omniglot_is_used_when_found_and_the_one_shot_benchmark_is_scored():
    if not (SHARED_DATA / "omniglot").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Omniglot data is missing from {SHARED_DATA} in CI")
        pytest.skip(f"needs the Omniglot data in {SHARED_DATA}")
    config = small(
        dataset="auto", data_path=str(SHARED_DATA), parts=("final",), methods=("anil",), shots=(1,),
        meta_iterations=1, final_episodes=4,
    )  # fmt: skip
    frame = collect(run(config))
    assert set(frame["dataset"].dropna()) == {"omniglot"}
    one_shot = frame[frame["benchmark"] == "omniglot_one_shot"].set_index(["method", "predictor"])["error_rate"]
    assert 0 <= one_shot[("anil", "nearest")] <= 1 and 0 <= one_shot[("anil", "head")] <= 1
    assert one_shot[("people", "published")] == pytest.approx(0.045)
    assert ("pixel_nearest", "pixels") in one_shot.index


# ---------------------------------------------------------------------------------------------
# the cost known before a run


def quick(**overrides) -> MemoryReducedConfig:
    return MemoryReducedConfig.preset("quick", **overrides)


def test_the_estimate_grows_linearly_in_k_for_maml_as_its_recorded_graph_does():
    """The memory part's estimate rests on the graph memory the part records: MAML's grows by the same
    bytes per inner step in both, Algorithm 1's by none."""
    sizes = {"parts": ("memory",), "hidden": 16, "memory_shots": 5, "dataset": "glyphs"}
    maml = {K: EXPERIMENT.estimate(quick(**sizes, methods=("maml",), k_grid=(K,))).bytes for K in (10, 20, 40)}
    assert maml[40] - maml[20] == pytest.approx(2 * (maml[20] - maml[10]), rel=1e-9)
    implicit = {K: EXPERIMENT.estimate(quick(**sizes, methods=("implicit",), k_grid=(K,))).bytes for K in (10, 40)}
    assert implicit[40] == implicit[10]
    graph = collect(run(small(**sizes, methods=("maml",), k_grid=(10, 20), timing_repeats=1)))
    recorded = graph.set_index("inner_steps")["graph_bytes"]
    per_step_recorded = (recorded[20] - recorded[10]) / 10
    per_step_estimated = (maml[20] - maml[10]) / 10
    assert per_step_recorded <= per_step_estimated <= 2 * per_step_recorded  # RSS holds the graph and a bit more


def test_the_issues_link_is_estimated_above_the_ten_gigabytes_it_took():
    """K = 300, hidden 64, MAML, 5 shots drove a server to 10.4 GB: the estimate says so before running."""
    cost = EXPERIMENT.estimate(
        quick(parts=("memory",), k_grid=(300,), hidden=64, methods=("maml",), meta_iterations=1, memory_shots=5)
    )
    assert 5 * GB < cost.bytes < 20 * GB
    assert cost.driver.startswith("K values of the memory bars, Conv-4 channels")
    too_long = EXPERIMENT.estimate(quick(parts=("training",), meta_iterations=100_000))
    assert too_long.seconds > 3600 and "meta-iterations" in too_long.driver


def test_every_part_has_a_cost_and_the_page_views_fit_the_default_budget():
    page = {"methods": ("implicit", "maml", "anil", "anil_recompute"), "shots": (1,), "timing_repeats": 3}
    for part in ("memory", "training", "cg", "final"):
        cost = EXPERIMENT.estimate(quick(**page, parts=(part,)))
        assert 0 < cost.bytes < 2 * GB and 0 < cost.seconds < 60, (part, cost)


#: configurations large enough that the run, not the interpreter, sets the peak: the memory part's MAML at
#: K = 20 (its graph grows with K) and a vmapped meta-training of 8 tasks
LARGE = [
    {"parts": ("memory",), "methods": ("maml",), "k_grid": (20,), "hidden": 32, "memory_shots": 5, "dataset": "glyphs"},
    {"parts": ("training",), "methods": ("implicit",), "shots": (5,), "hidden": 32, "meta_batch": 8,
     "meta_iterations": 2, "eval_episodes": 1, "dataset": "glyphs"},
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("overrides", LARGE, ids=["memory-maml-k20", "training-vmap-8-tasks"])
def test_memory_estimate_is_within_a_factor_of_two_of_the_measured_peak(overrides):
    from test_cost import measured_extra_bytes

    estimate = EXPERIMENT.estimate(quick(**overrides)).bytes
    _, measured = peak_rss_in_subprocess(measured_extra_bytes, "memory_reduced", overrides)
    assert measured > 50 * MB  # the run, not noise, sets the peak
    print(f"estimate {estimate / MB:.0f} MB, measured {measured / MB:.0f} MB")
    assert measured / 2 <= estimate <= 2 * measured, f"estimate {estimate / MB:.0f} MB, measured {measured / MB:.0f} MB"
