"""The stored Omniglot 5-way 1-shot backbones (Algorithm 1 and MAML): each loads, repeats its stored accuracy
on the stored check episodes with its own inner solver, and Algorithm 1's is far above chance and above an
untrained backbone; the claim table reads them.  Needs the real Omniglot in ../shared/data (skipped
without it, a failure on CI)."""

import os
from pathlib import Path

import pytest
import torch

from metalab import pretrained
from metalab.experiments.memory_reduced.claims import omniglot_claim_table
from metalab.experiments.memory_reduced.context import load_data
from metalab.experiments.memory_reduced.pretrained import (
    BACKBONE_METHODS,
    CHECK_EPISODES,
    EVAL_EPISODES,
    backbone_name,
    evaluate_backbone,
    initial_network,
    load_backbone,
    omniglot_config,
    train_backbone,
)
from metalab.nets import Conv4

OMNIGLOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
#: 40 check episodes hold 1,000 query predictions; float32 argmax on another CPU may flip a few (5 = 0.5 %)
FLIP_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def data():
    if not (OMNIGLOT / "images_background_small1.zip").is_file():
        reason = f"real Omniglot not found at {OMNIGLOT} (see shared/data/README.md)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return load_data(omniglot_config(str(OMNIGLOT)))


def test_stored_backbones_load_as_conv4_at_the_stored_setting():
    reference = omniglot_config()
    for method in BACKBONE_METHODS:
        net, info = pretrained.load(backbone_name(method))
        assert isinstance(net, Conv4) and info.config["method"] == method and info.size < 160_000
        config, _, _ = load_backbone(method)
        assert config == reference.replace(meta_iterations=config.meta_iterations), f"{method}: another setting"
        assert info.training["status"] == "ok" and info.training["meta_iterations"] >= 600
        assert info.evaluation["test"]["episodes"] == EVAL_EPISODES
        assert info.evaluation["check"]["episodes"] == CHECK_EPISODES
        # MAML meta-learns the head's initialisation and stores it; Algorithm 1 starts from a zero head
        assert (net.head is not None) == (method == "maml")


@pytest.mark.realdata
@pytest.mark.parametrize("method", BACKBONE_METHODS)
def test_stored_backbone_repeats_its_check_accuracy(method, data):
    config, trained, info = load_backbone(method, str(OMNIGLOT))
    check = evaluate_backbone(config, method, trained, data, CHECK_EPISODES)
    stored, test = info.evaluation["check"], info.evaluation["test"]
    assert check["accuracy"] == pytest.approx(stored["accuracy"], abs=FLIP_TOLERANCE)
    # the 40 check episodes are the first of the 200 test episodes: their means agree within the intervals
    assert abs(check["accuracy"] - test["accuracy"]) <= check["ci95"] + test["ci95"]


@pytest.mark.realdata
def test_algorithm_1_backbone_is_far_above_chance_and_above_an_untrained_one(data):
    config, trained, info = load_backbone("implicit", str(OMNIGLOT))
    assert info.evaluation["test"]["accuracy"] > 0.85  # chance is 0.2
    untrained, _ = initial_network(config, "implicit")  # where its meta-training started
    untrained = evaluate_backbone(config, "implicit", untrained, data, CHECK_EPISODES)
    assert info.evaluation["check"]["accuracy"] > untrained["accuracy"] + 0.1


def test_claim_table_reads_the_stored_evaluations_and_measures_graph_memory():
    table = omniglot_claim_table()
    assert list(table.columns) == ["claim", "paper", "metalab", "verdict"] and len(table) == 3
    maml = pretrained.info(backbone_name("maml")).evaluation["test"]["accuracy"]
    assert f"{maml:.1%}" in table.loc[0, "metalab"] and "98.7%" in table.loc[0, "paper"]
    assert table.loc[0, "verdict"].startswith(("reproduced", "below, as expected"))
    # Algorithm 1's graph does not hold the K = 20 unrolled steps MAML's does
    assert table.loc[2, "verdict"].startswith("holds")


@pytest.mark.parametrize("method", BACKBONE_METHODS)
def test_a_resumed_training_run_repeats_a_straight_one(method, tmp_path):
    """Stopping after 2 meta-iterations and resuming from the checkpoint to 4 gives the parameters (and
    MAML's head) of 4 iterations run straight: same meta-batches, same Adam state.  Generated glyphs, so
    no data is needed."""
    config = omniglot_config(iterations=4).replace(dataset="glyphs", hidden=8, meta_batch=2)
    data = load_data(config)
    straight, _ = train_backbone(config, method, data, log=lambda line: None)
    checkpoint = tmp_path / "run.pt"
    train_backbone(config.replace(meta_iterations=2), method, data, checkpoint, checkpoint_every=1, log=print)
    resumed, summary = train_backbone(config, method, data, checkpoint, checkpoint_every=1, log=print)
    assert summary["meta_iterations"] == 4 and summary["status"] == "ok"
    for ours, theirs in ((resumed.params, straight.params), (resumed.head, straight.head)):
        for name, tensor in theirs.items():
            torch.testing.assert_close(ours[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="past meta_iterations=2"):
        train_backbone(config.replace(meta_iterations=2), method, data, checkpoint, log=print)
