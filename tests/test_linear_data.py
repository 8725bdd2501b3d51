"""The hard-parameter-sharing task generator."""

from __future__ import annotations

import pytest
import torch

from metalab.data import LinearTasks, hps_tasks


def test_shapes_structure_and_noiseless_labels():
    data = hps_tasks(12, 3, 40, 7, seed=1)
    assert isinstance(data, LinearTasks)
    assert data.X.shape == (40, 7, 12) and data.y.shape == (40, 7)
    assert data.basis.shape == (12, 3) and data.head.shape == (40, 3) and data.coef.shape == (40, 12)
    assert data.X.dtype == torch.float64 and data.noise == 0.0
    torch.testing.assert_close(data.basis.T @ data.basis, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(data.coef, data.head @ data.basis.T)
    torch.testing.assert_close(data.y, torch.einsum("tmd,td->tm", data.X, data.coef), rtol=0, atol=1e-12)


def test_scales_of_heads_inputs_and_noise():
    data = hps_tasks(10, 4, 2000, 50, noise=0.5, seed=0)
    assert data.coef.square().sum(1).mean() == pytest.approx(1.0, abs=0.05)  # E||θ_t||² = 1
    assert data.X.var() == pytest.approx(1.0, abs=0.02)
    residual = data.y - torch.einsum("tmd,td->tm", data.X, data.coef)
    assert residual.std() == pytest.approx(0.5, abs=0.01)


def test_seeded_and_free_of_global_rng():
    state = torch.get_rng_state()
    first, again, other = (
        hps_tasks(6, 2, 5, 4, 0.1, seed=3),
        hps_tasks(6, 2, 5, 4, 0.1, seed=3),
        hps_tasks(6, 2, 5, 4, 0.1, seed=4),
    )
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.X, again.X) and torch.equal(first.y, again.y) and torch.equal(first.basis, again.basis)
    assert not torch.equal(first.X, other.X) and not torch.equal(first.basis, other.basis)


def test_new_tasks_share_the_subspace_only():
    data = hps_tasks(8, 2, 10, 5, noise=0.2, seed=0)
    fresh = data.new_tasks(n_tasks=3, n_samples=9, seed=1)
    assert torch.equal(fresh.basis, data.basis) and fresh.noise == 0.2
    assert fresh.X.shape == (3, 9, 8) and not torch.equal(fresh.head, data.head[:3])


def test_given_basis_dtype_and_device():
    basis = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64)).Q
    data = hps_tasks(6, 2, 4, 3, basis=basis, dtype=torch.float32)
    assert data.X.dtype == torch.float32 and torch.allclose(data.basis, basis.float())
    assert data.X.device.type == "cpu"
    with pytest.raises(ValueError, match="basis does not have orthonormal columns"):
        hps_tasks(6, 2, 4, 3, basis=2 * basis)
    with pytest.raises(ValueError, match=r"basis has shape \(6, 2\); expected \(d, rank\) = \(6, 3\)"):
        hps_tasks(6, 3, 4, 3, basis=basis)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d": 0}, r"d=0 is not allowed: an integer >= 1"),
        ({"rank": 7}, r"rank=7 is not allowed: an integer in 1..6"),
        ({"rank": 1.5}, r"rank=1.5 is not allowed"),
        ({"n_tasks": 0}, r"n_tasks=0 is not allowed"),
        ({"n_samples": -2}, r"n_samples=-2 is not allowed"),
        ({"noise": -0.1}, r"noise=-0.1 is not allowed: a finite number >= 0"),
        ({"noise": float("nan")}, r"noise=nan is not allowed"),
        ({"seed": -1}, r"seed=-1 is not allowed"),
        ({"dtype": torch.int64}, r"dtype=torch.int64 is not allowed"),
        ({"device": "tpu"}, r"device='tpu' is not allowed"),
    ],
)
def test_arguments_are_validated(kwargs, message):
    arguments = {"d": 6, "rank": 2, "n_tasks": 4, "n_samples": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        hps_tasks(**arguments)
