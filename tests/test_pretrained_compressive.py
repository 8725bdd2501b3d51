"""The stored compressive models reproduce their stored evaluation, a stopped meta-training resumes
exactly, and the claim table reads the stored evaluations."""

from __future__ import annotations

import pytest
import torch

from metalab import pretrained
from metalab.compressive.datasets import dataset_family
from metalab.compressive.training import meta_train
from metalab.experiments.compressive.claims import COLUMNS, claim_table
from metalab.experiments.compressive.pretrained import (
    CHECK_SETS,
    compressive_model_config,
    evaluate_compressive_model,
    load_compressive_model,
    model_name,
    train_compressive_model,
)

STORED = sorted(m.name for m in pretrained.available() if m.config.get("architecture") == "compressive")


def _tiny_run(steps: int = 6):
    family = dataset_family("mixtures", n=20, d=2, k=2)
    return meta_train(
        "kmeans", family, sketch_size=6, steps=steps, batch=4, eval_every=3, eval_size=2, device="cpu",
        sketch_hidden=(8,), width=8, blocks=1,
    )  # fmt: skip


def test_resumed_meta_training_equals_an_uninterrupted_one():
    straight = _tiny_run()
    straight.run()
    first = _tiny_run()
    for progress in first:
        if progress.step == 3:
            break
    state = first.state_dict()
    resumed = _tiny_run()
    resumed.load_state_dict(state)
    steps = [p.step for p in resumed]
    assert steps == [4, 5, 6]
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)


def test_a_state_past_the_run_is_refused():
    run = _tiny_run()
    state = run.state_dict() | {"done": 7}
    with pytest.raises(ValueError, match="at step 7, which is not allowed: this run has 6 steps"):
        run.load_state_dict(state)


def test_training_resumes_from_its_checkpoint(tmp_path):
    config = compressive_model_config("pca", steps=4, eval_every=2, eval_sets=2, sketch_hidden=(8,), width=8, blocks=1)
    checkpoint = tmp_path / f"{model_name(config)}.pt"
    model, summary = train_compressive_model(config, checkpoint, checkpoint_every=2, log=lambda line: None)
    assert checkpoint.exists() and summary["steps"] == 4
    first_curve = summary["held_out_median_by_step"]
    lines = []
    again, summary = train_compressive_model(config, checkpoint, log=lines.append)
    assert lines == [f"{model_name(config)}: resumed at step 4 from {checkpoint}"]
    assert summary["held_out_median_by_step"] == first_curve and len(first_curve) == 2
    for name, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("name", STORED)
def test_stored_model_reproduces_its_check_evaluation(name):
    torch.set_num_threads(1)
    config, model, info = load_compressive_model(name)
    stored = info.evaluation["check"]
    measured = evaluate_compressive_model(config, model, CHECK_SETS)
    for method in ("learned", "random", "random_data_scale"):
        if method not in stored:
            continue
        assert measured[method]["relative_error"] == pytest.approx(stored[method]["relative_error"], rel=1e-2)
    assert [row["epsilon"] for row in measured["privacy"]] == [row["epsilon"] for row in stored["privacy"]]
    for again, row in zip(measured["privacy"], stored["privacy"], strict=True):
        assert again["learned"] == pytest.approx(row["learned"], rel=1e-2)
        assert again["random"] == pytest.approx(row["random"], rel=1e-2)
    assert info.size < 800_000


def test_claim_table_has_one_row_per_stored_model():
    table = claim_table(STORED)
    assert tuple(table.columns) == COLUMNS and len(table) == len(STORED)
    assert table["verdict"].str.match(r"^(reproduced|partly|not reproduced): ").all()


def test_the_notebooks_play_draws_a_fresh_example_from_a_stored_model():
    from metalab.experiments.compressive.pretrained import stored_example, stored_sketch_sizes

    assert stored_sketch_sizes("pca") == [20, 40] and stored_sketch_sizes("kmeans") == [500]
    name, frame = stored_example("pca", samples=200, seed=3)
    errors = frame.groupby("method")["relative_error"].first()
    assert name == "compressive_pca_d10_m20"
    assert errors["exact"] == 1.0 and errors["learned"] >= 1.0 and errors["random"] >= 1.0  # exact is optimal
    private, _ = stored_example("ridge", epsilon=1.0, samples=200)
    assert private == "compressive_ridge_d10_m20_private"  # a budget picks the model trained on private sketches
    with pytest.raises(ValueError, match=r"no stored 'kmeans' model with sketch size m = 20; stored: \[500\]"):
        stored_example("kmeans", sketch_size=20)
