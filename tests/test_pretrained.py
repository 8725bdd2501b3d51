"""metalab.pretrained: the stored models reproduce their stored evaluation, and every way a model file can be
wrong gives an error naming the file and the command that regenerates it."""

import json
import math

import pytest
import torch

from metalab import pretrained
from metalab.experiments.mlsr.sinusoid_inits import (
    CHECK_TASKS,
    INIT_METHODS,
    REPORTED_STEPS,
    evaluate_sinusoid_init,
    init_name,
    load_sinusoid_init,
    published_claim_table,
    sinusoid_init_config,
    train_sinusoid_init,
)
from metalab.nets import MLP
from metalab.pretrained import PretrainedError

COMMAND = "python -m metalab.pretrained.train tiny"


SINUSOID_INITS = [m.name for m in pretrained.available() if m.name.startswith("sinusoid_")]


@pytest.mark.parametrize("name", SINUSOID_INITS)
def test_stored_sinusoid_init_reproduces_its_stored_evaluation(name):
    """Adapting the loaded initialisation on the 100 fixed check tasks repeats the stored MSE after 1 / 5 / 10
    steps (to float noise), and those agree with the stored 600-task evaluation within the two intervals."""
    method, shots = name.removeprefix("sinusoid_").rsplit("_k", 1)
    config, model, info = load_sinusoid_init(method, int(shots))
    assert info.name == name and config.shots == int(shots)
    with torch.random.fork_rng(devices=[]):
        check = evaluate_sinusoid_init(config, model, CHECK_TASKS)
    stored, test = info.evaluation["check"], info.evaluation["test"]
    assert test["eval_tasks"] >= 600 and test["eval_shots"] == 5
    for steps in map(str, REPORTED_STEPS):
        assert check["mse"][steps] == pytest.approx(stored["mse"][steps], rel=1e-3)
        assert abs(check["mse"][steps] - test["mse"][steps]) <= 2 * (check["ci95"][steps] + test["ci95"][steps])
    assert info.training["status"] == "ok" and info.training["meta_iterations"] >= 30_000


def test_stored_files_are_small_and_match_their_checksums():
    models = pretrained.available()
    assert {init_name(m, 10) for m in INIT_METHODS} <= {m.name for m in models}
    for model in models:
        tensors, _ = pretrained.load_tensors(model.name)
        limit = 800_000 if model.config.get("architecture") == "compressive" else 160_000  # m = 500 sketches
        assert model.size < limit, f"{model.file} is {model.size} bytes"
        assert model.format_version == pretrained.FORMAT_VERSION and model.command.startswith("python -m metalab")
        assert all(torch.isfinite(t).all() for t in tensors.values())


def test_a_resumed_training_run_repeats_a_straight_one(tmp_path):
    """Stopping after 3 meta-iterations and resuming from the checkpoint to 6 gives the parameters of 6
    iterations run straight (same meta-batches, same Adam state)."""
    straight, _ = train_sinusoid_init(sinusoid_init_config(iterations=6), "maml", log=lambda line: None)
    checkpoint = tmp_path / "maml.pt"
    train_sinusoid_init(sinusoid_init_config(iterations=3), "maml", checkpoint, checkpoint_every=3, log=print)
    resumed, summary = train_sinusoid_init(sinusoid_init_config(iterations=6), "maml", checkpoint, log=print)
    torch.testing.assert_close(resumed.params, straight.params)
    assert summary["meta_iterations"] == 6
    with pytest.raises(ValueError, match=r"maml\.pt is at iteration 6, past meta_iterations=3"):
        train_sinusoid_init(sinusoid_init_config(iterations=3), "maml", checkpoint, log=print)


def test_claim_table_compares_maml_with_the_published_numbers_and_mlsr_with_maml():
    table = published_claim_table()
    assert list(table.columns) == ["claim", "paper", "metalab", "verdict"]
    assert len(table) == 2 * len(REPORTED_STEPS)
    assert table["paper"].iloc[0] == "0.67" and table["verdict"].str.contains(": ").all()


# --------------------------------------------------------------------------------------------
# the error paths, on a tiny model stored in a temporary folder


@pytest.fixture
def stored(tmp_path):
    torch.manual_seed(0)
    net = MLP([2, 3, 1])
    tensors = {k: v.detach() for k, v in net.state_dict().items()}
    config = {"architecture": "mlp", "sizes": [2, 3, 1], "activation": "relu"}
    info = pretrained.save(
        "tiny",
        tensors,
        config,
        "a tiny MLP",
        "none",
        training={"meta_iterations": 1},
        evaluation={},
        command=COMMAND,
        directory=tmp_path,
    )
    return net, info


def test_save_and_load_round_trip_a_ready_module(stored, tmp_path):
    net, info = stored
    loaded, loaded_info = pretrained.load("tiny", tmp_path)
    x = torch.randn(5, 2)
    torch.testing.assert_close(loaded(x), net(x))
    assert loaded_info == info and info.size == info.file.stat().st_size
    assert [m.name for m in pretrained.available(tmp_path)] == ["tiny"]
    meta = json.loads(info.file.with_suffix(".json").read_text())
    assert meta["torch_version"] == torch.__version__ and len(meta["sha256"]) == 64


def test_unknown_architecture_loads_as_tensors(tmp_path):
    pretrained.save(
        "raw", {"w": torch.ones(2)}, {"architecture": "other"}, "d", "p", training={}, evaluation={}, command=COMMAND,
        directory=tmp_path,
    )  # fmt: skip
    tensors, _ = pretrained.load("raw", tmp_path)
    torch.testing.assert_close(tensors["w"], torch.ones(2))


def test_unknown_name_lists_the_available_models(stored, tmp_path):
    with pytest.raises(
        PretrainedError, match=r"no pretrained model 'nope': .*nope\.json does not exist \(available: tiny"
    ):
        pretrained.load("nope", tmp_path)


def test_missing_tensor_file_names_it_and_the_command(stored, tmp_path):
    stored[1].file.unlink()
    with pytest.raises(PretrainedError, match=rf"tiny\.safetensors is missing: regenerate it with `{COMMAND}`"):
        pretrained.load("tiny", tmp_path)


def test_corrupt_tensor_file_fails_its_checksum(stored, tmp_path):
    data = bytearray(stored[1].file.read_bytes())
    data[-1] ^= 0xFF
    stored[1].file.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match=rf"tiny\.safetensors is corrupt: its SHA-256 .*`{COMMAND}`"):
        pretrained.load("tiny", tmp_path)


def _edit_json(info, **changes):
    path = info.file.with_suffix(".json")
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_other_format_version_is_refused(stored, tmp_path):
    _edit_json(stored[1], format_version=99)
    with pytest.raises(PretrainedError, match=rf"tiny\.json has format version 99, .* reads version 1: .*`{COMMAND}`"):
        pretrained.load("tiny", tmp_path)


def test_tensors_that_do_not_fit_the_config_are_refused(stored, tmp_path):
    _edit_json(stored[1], config={"architecture": "mlp", "sizes": [2, 4, 1], "activation": "relu"})
    with pytest.raises(
        PretrainedError,
        match=rf"tiny\.safetensors does not fit its config \(0\.bias: stored \(3,\), config \(4,\).*`{COMMAND}`",
    ):
        pretrained.load("tiny", tmp_path)


def test_incomplete_description_is_refused(stored, tmp_path):
    path = stored[1].file.with_suffix(".json")
    meta = json.loads(path.read_text())
    del meta["sha256"]
    path.write_text(json.dumps(meta))
    with pytest.raises(PretrainedError, match=rf"tiny\.json lacks sha256: regenerate it with `{COMMAND}`"):
        pretrained.info("tiny", tmp_path)


def test_claim_table_verdicts_follow_the_intervals(monkeypatch):
    """A MAML within the tolerance of the published number is 'reproduced', one far off is not; MLSR above
    MAML by more than the two intervals 'does not hold'."""

    def fake(mse_maml, mse_mlsr, ci=0.01):
        test = {
            "maml": {"mse": {str(s): mse_maml for s in REPORTED_STEPS}, "ci95": {str(s): ci for s in REPORTED_STEPS}},
            "mlsr": {"mse": {str(s): mse_mlsr for s in REPORTED_STEPS}, "ci95": {str(s): ci for s in REPORTED_STEPS}},
        }
        info = lambda name: type("Info", (), {"evaluation": {"test": test[name.split("_")[1]]}})  # noqa: E731
        monkeypatch.setattr(pretrained, "info", info)
        return published_claim_table()

    close = fake(0.67, 0.60)
    assert close["verdict"].iloc[0].startswith("reproduced") and close["verdict"].iloc[1].startswith("holds")
    far = fake(2.0, 2.5)
    assert far["verdict"].iloc[0].startswith("not reproduced") and far["verdict"].iloc[1].startswith("does not hold")
    assert not math.isnan(float(far["metalab"].iloc[0].split(" ± ")[0]))
