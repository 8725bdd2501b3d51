"""The compressive meta-learning experiment's contract (parts, records, progress), its record stream, its
figures and the CLI that writes it."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from metalab.cli import main
from metalab.compressive.datasets import dataset_family
from metalab.compressive.query import make_task
from metalab.compressive.randomized import RandomizedLearner
from metalab.core import ConfigError, collect
from metalab.experiments.compressive import (
    EXPERIMENT,
    PAPER,
    PARTS,
    TITLE,
    CompressiveConfig,
    CompressiveContext,
    ModelKey,
    figures,
    ratios,
    run,
)
from metalab.experiments.compressive.parts import EVALUATION_COST

#: a few meta-training steps: enough to exercise every path, not to learn well
TINY = dict(
    steps=8,
    batch=8,
    eval_sets=4,
    eval_every=4,
    width=32,
    blocks=1,
    sketch_hidden=(16,),
    n_samples=200,
    held_out_samples=None,
    sketch_size=20,
    sketch_sizes=(10, 20),
    epsilons=(1.0, 100.0),
    reference_steps=20,
    decode_sizes=(500, 5000),
    throughput_rows=2000,
    scheduler="single",
    device="cpu",
)


def tiny(**changes) -> CompressiveConfig:
    return CompressiveConfig(**{**TINY, **changes})


def test_paper_block_and_declared_parts():
    assert TITLE == PAPER.title == "Compressive Meta-Learning" and PAPER.arxiv == "2508.11090"
    assert 2 <= len(PAPER.claims) <= 4 and "arXiv:2508.11090" in PAPER.citation
    assert EXPERIMENT.name == "compressive" and EXPERIMENT.part_names == PARTS == CompressiveConfig().parts


def test_every_part_keeps_its_declaration_and_the_progress_bar_only_moves_forward():
    records = list(run(tiny(tasks=("kmeans", "ridge"))))
    for record in records:
        EXPERIMENT.part(record.part).check_record(record)
    assert {r.part for r in records} == set(PARTS)
    progress = [r.progress for r in records]
    assert progress == sorted(progress) and progress[-1] == 1.0
    privacy = [r for r in records if r.part == "privacy"]
    assert {r.step for r in privacy} == {1.0, 100.0}  # step is the x-axis, epsilon (it was the sketch size)
    assert {r.step for r in records if r.part in ("merge", "throughput")} == {0}


def test_training_unit_reports_the_fraction_of_its_steps_done():
    config = tiny(parts=("training",), tasks=("kmeans",), steps=40, eval_every=20)
    (unit,) = EXPERIMENT.part("training").units(config, CompressiveContext(config))
    records = list(unit.work())
    fractions = [r.progress for r in records]
    assert fractions == [r.values["iteration"] / 40 for r in records]
    assert fractions == sorted(fractions) and fractions[0] <= 0.25 and fractions[-1] == 1.0
    # in a run of two tasks, the first task's training fills the first half of the bar step by step
    run_fractions = [r.progress for r in run(config.replace(tasks=("kmeans", "pca"))) if r.values["task"] == "kmeans"]
    assert run_fractions[0] <= 0.15 and 0.45 <= run_fractions[-1] <= 0.55


def test_the_first_unit_that_needs_a_model_trains_it_and_weighs_its_steps():
    config = tiny(parts=("training", "sketch_size"), tasks=("pca",), sketch_size=20, sketch_sizes=(10, 20), steps=300)
    context = CompressiveContext(config)
    (training,) = EXPERIMENT.part("training").units(config, context)
    small, same = EXPERIMENT.part("sketch_size").units(config, context)
    assert training.weight == pytest.approx(301)
    assert small.weight == pytest.approx(300 + EVALUATION_COST)  # m = 10 is trained here
    assert same.weight == pytest.approx(EVALUATION_COST)  # m = 20: trained by the training unit
    assert context.planned == {ModelKey("pca", 20), ModelKey("pca", 10)}


def test_training_curve_streams_held_out_errors_and_progress():
    records = list(run(tiny(parts=("training",), tasks=("kmeans",))))
    frame = collect(records)
    held = frame.dropna(subset=["held_out"])
    assert held["step"].tolist() == held["iteration"].tolist() == [4, 8]
    assert (held["held_out"] > 0).all() and frame["seconds"].is_monotonic_increasing
    assert records[-1].progress == 1.0


def test_merge_part_shows_split_streamed_and_removed_sketches_equal_the_one_pass_sketch():
    frame = collect(run(tiny(parts=("merge",), tasks=("kmeans", "ridge"), workers=5)))
    assert set(frame["method"]) == {"learned", "random"}
    assert (frame["count"] == 200).all() and (frame["workers"] == 5).all()
    for column in ("merge_difference", "stream_difference", "remove_difference"):
        assert (frame[column] < 1e-12).all(), column


def test_decoding_part_times_every_method_and_scores_against_exact_kmeans():
    frame = collect(run(tiny(parts=("decoding",), tasks=("kmeans",))))
    assert set(frame["method"]) == {"learned", "random", "exact"} and set(frame["n"]) == {500, 5000}
    assert (frame["decode_seconds"] > 0).all()
    exact = frame[frame["method"] == "exact"]
    assert (exact["relative_error"] == 1.0).all()
    # CL-OMPR on the random Fourier sketch is a real decoder: near the exact SSE on a 3-cluster mixture
    random = frame[frame["method"] == "random"]
    assert (random["relative_error"] < 1.5).all()


def test_privacy_part_random_sketch_gets_worse_as_epsilon_shrinks():
    frame = collect(run(tiny(parts=("privacy",), tasks=("ridge",), epsilons=(0.05, 1000.0))))
    random = frame[frame["method"] == "random"].set_index("epsilon")["relative_error"]
    assert random[0.05] > 2.0 * random[1000.0]
    assert set(frame["mechanism"]) == {"laplace"}


def test_example_part_draws_each_answer_over_the_data():
    frame = collect(run(tiny(parts=("example",), tasks=("kmeans", "pca"), example_epsilon=10.0)))
    kmeans = frame[frame["task"] == "kmeans"]
    assert (kmeans["method"] == "data").sum() == 200
    assert (kmeans["method"] == "learned").sum() == 3 and (kmeans["method"] == "exact").sum() == 3
    assert (kmeans.loc[kmeans["method"] == "exact", "relative_error"] == 1.0).all()
    assert set(frame["epsilon"]) == {10.0}
    exact = kmeans[kmeans["method"] == "exact"]
    assert exact["point"].tolist() == exact["step"].tolist() == [0, 1, 2]
    figs = figures(frame)
    assert isinstance(figs["example"], Figure)


def test_random_learner_pca_is_exact_with_enough_measurements():
    family = dataset_family("low_rank", n=300, d=3, rank=1)
    data = family.sample(3, seed=0)
    task = make_task("pca", 3, k=1)
    learner = RandomizedLearner(task, 10)  # [x, 1] has D = 4, D (D + 1) / 2 = 10 measurements suffice
    errors = learner.error(learner.decode(learner.pooled(data.X)), data.X)
    assert torch.allclose(errors, task.exact_error(data.X), rtol=1e-6)


def test_config_rejects_impossible_combinations():
    with pytest.raises(ConfigError, match="clusters"):
        tiny(clusters=300)
    with pytest.raises(ConfigError, match="sketch_size"):
        tiny(sketch_size=21)
    with pytest.raises(ConfigError, match="components"):
        tiny(components=3, d=2)
    with pytest.raises(ConfigError, match="example_epsilon"):
        tiny(example_epsilon=0.0)
    with pytest.raises(ConfigError, match="tasks"):
        tiny(tasks=())
    with pytest.raises(ConfigError, match="cluster_scales"):
        tiny(cluster_scales=(0.3, 0.1))
    assert tiny(tasks=("pca",), sketch_size=21).sketch_size == 21  # odd sizes are fine without k-means


def test_ratios_and_figures_from_records():
    frame = pd.DataFrame(
        [
            {"part": "sketch_size", "method": m, "step": 10, "task": "pca", "sketch_size": 10, "relative_error": e}
            for m, e in (("learned", 1.2), ("random", 2.4), ("exact", 1.0))
        ]
    )
    assert ratios(frame) == {"pca_learned_vs_random": pytest.approx(0.5)}
    assert set(figures(frame)) == {"sketch_size"}


def test_cli_writes_evaluation_records_with_the_issue_columns_for_every_task_and_method(tmp_path):
    out = tmp_path / "run"
    args = ["run", "compressive", "--quiet", "--out", str(out), "--set", "parts=sketch_size"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={','.join(map(str, value)) if isinstance(value, tuple) else value}"]
    assert main(args) == 0
    frame = pd.read_csv(out / "records.csv")
    assert {"task", "method", "sketch_size", "relative_error"} <= set(frame.columns)
    assert set(frame["task"]) == {"pca", "ridge", "kmeans", "autoencoder"}
    assert set(frame["method"]) == {"learned", "random", "exact"}
    assert set(frame["sketch_size"]) == {10, 20}
    assert (frame.loc[frame["method"] == "exact", "relative_error"] == 1.0).all()
    errors = frame.loc[frame["method"] != "exact", ["relative_error", "q25", "q75"]]
    assert errors.map(math.isfinite).all().all() and (errors["q25"] <= errors["relative_error"]).all()
    # ridge from a quadratic sketch of [x, y, 1] with m >= D (D + 1) / 2 = 10 (d = 2) is exact
    random_ridge = frame[(frame["task"] == "ridge") & (frame["method"] == "random")]
    assert random_ridge["relative_error"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert (out / "sketch_size.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------
# cost before the run


#: runs whose own arrays set the peak: meta-training on large data sets, 'decoding' at n = 100 000
LARGE = [
    {"parts": ("training",), "tasks": ("kmeans",), "steps": 10, "eval_every": 10, "n_samples": 5000, "batch": 8},
    {"parts": ("decoding",), "tasks": ("kmeans",), "steps": 20, "eval_every": 20, "decode_sizes": (100_000,)},
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", LARGE, ids=["training", "decoding"])
def test_memory_estimate_is_within_a_factor_of_two_of_the_measured_peak(overrides):
    from test_cost import measured_extra_bytes

    from metalab.core.cost import MB
    from metalab.core.memory import peak_rss_in_subprocess

    estimate = EXPERIMENT.estimate(CompressiveConfig.preset("quick", **overrides)).bytes
    _, measured = peak_rss_in_subprocess(measured_extra_bytes, "compressive", overrides)
    assert measured > 50 * MB
    assert measured / 2 <= estimate <= 2 * measured, f"estimate {estimate / MB:.0f} MB, measured {measured / MB:.0f} MB"


def test_estimate_grows_with_the_sizes_and_names_the_settings_behind_it():
    page = CompressiveConfig.preset("quick", steps=300, eval_every=25, parts=("training", "example"), tasks=("kmeans",))
    cost = EXPERIMENT.estimate(page)
    assert cost.bytes < 500 * 2**20 and cost.seconds < 30  # the page's default view fits any budget
    longer = EXPERIMENT.estimate(page.replace(steps=3000, n_samples=5000))
    assert longer.seconds > 20 * cost.seconds and longer.bytes > cost.bytes
    assert "meta-training steps" in longer.driver and "samples per data set n" in longer.driver
    huge = EXPERIMENT.estimate(CompressiveConfig.preset("quick", decode_sizes=(10**8,)))
    assert huge.bytes > 50 * 2**30 and huge.driver == "data set sizes n of 'decoding'"
    assert (
        EXPERIMENT.estimate(CompressiveConfig.preset("paper")).seconds
        > EXPERIMENT.estimate(CompressiveConfig.preset("quick")).seconds
    )
