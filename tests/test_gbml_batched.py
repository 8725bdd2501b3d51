"""The batched MLP path of MAML (per-task weights as a leading dimension) against the generic vmap path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metalab.gbml import batched, meta_gradient
from metalab.nets import MLP, param_dict

torch.set_num_threads(1)


def _problem(loss: str, tasks: int = 5, shots: int = 6):
    torch.manual_seed(1)
    if loss == "ce":
        model = MLP([4, 9, 7, 3], activation="tanh").double()
        sx, qx = torch.randn(2, tasks, shots, 4, dtype=torch.float64).unbind(0)
        sy, qy = torch.randint(0, 3, (2, tasks, shots)).unbind(0)
    else:
        model = MLP([1, 12, 12, 1]).double()
        sx, qx = (torch.rand(2, tasks, shots, 1, dtype=torch.float64) * 10 - 5).unbind(0)
        sy, qy = torch.sin(sx) * 2, torch.sin(qx) * 2
    return model, param_dict(model), (sx, sy), (qx, qy)


def _relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-300)) for k in b)


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("method", ["maml", "fomaml", "anil"])
def test_batched_meta_gradient_equals_the_generic_vmap_path(method, steps, loss):
    model, params, support, query = _problem(loss)
    generic = nn.Sequential(*model)  # the same layers and parameter names, but not an MLP: the vmap path
    assert batched.fits(model) and not batched.fits(generic)
    options = {"inner_steps": steps, "inner_lr": 0.3, "loss": loss, "l1": 0.05 if method == "maml" else 0.0}
    fast = meta_gradient(method, model, params, support, query, **options)
    slow = meta_gradient(method, generic, params, support, query, **options)
    assert fast.status == slow.status == "ok"
    assert _relative_difference(fast.grads, slow.grads) < 1e-6
    assert torch.allclose(fast.task_query_losses, slow.task_query_losses, rtol=1e-9, atol=0)


def test_meta_gradient_takes_the_batched_path_for_an_mlp_only(monkeypatch):
    calls = []
    original = batched.unrolled_query_losses

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(batched, "unrolled_query_losses", counted)
    model, params, support, query = _problem("mse")
    meta_gradient("maml", model, params, support, query, inner_steps=1)
    meta_gradient("maml", nn.Sequential(*model), params, support, query, inner_steps=1)
    meta_gradient("maml", model, params, support, query, inner_steps=1, batch_mode="sequential")
    assert calls == [model]


def test_a_subclass_of_mlp_keeps_the_generic_path():
    class Scaled(MLP):
        def forward(self, x):
            return 2 * super().forward(x)

    assert not batched.fits(Scaled([2, 3, 1]))


def test_forward_with_per_task_weights_matches_each_task_alone():
    model, params, (sx, _), _ = _problem("mse")
    per_task = {k: v.expand(sx.shape[0], *v.shape) + 0.01 * torch.randn(sx.shape[0], *v.shape, dtype=v.dtype)
                for k, v in params.items()}  # fmt: skip
    out = batched.forward(model, per_task, sx)
    for t in range(sx.shape[0]):
        alone = torch.func.functional_call(model, {k: v[t] for k, v in per_task.items()}, (sx[t],))
        assert torch.allclose(out[t], alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["maml", "fomaml"])
def test_weights_kept_factored_over_several_steps_give_the_generic_meta_gradient(method):
    torch.manual_seed(2)
    model = MLP([4, 32, 32, 3]).double()  # 4 shots: rank 4, 8, 12 stays below 32 * 32 / 64 = 16
    sx, qx = torch.randn(2, 3, 4, 4, dtype=torch.float64).unbind(0)
    sy, qy = torch.randint(0, 3, (2, 3, 4)).unbind(0)
    options = {"inner_steps": 3, "inner_lr": 0.5, "loss": "ce"}
    fast = meta_gradient(method, model, param_dict(model), (sx, sy), (qx, qy), **options)
    slow = meta_gradient(method, nn.Sequential(*model), param_dict(model), (sx, sy), (qx, qy), **options)
    assert _relative_difference(fast.grads, slow.grads) < 1e-6
    assert batched.factors_cheaper(12, 32, 32) and not batched.factors_cheaper(17, 32, 32)
