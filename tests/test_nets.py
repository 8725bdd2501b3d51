"""Networks for meta-learning: shapes, buffer-free BatchNorm, functional calls, parameter dicts."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, vmap

from metalab.nets import (
    MLP,
    Conv4,
    LinearHead,
    features,
    init_head,
    merge_params,
    param_dict,
    seeded_conv4,
    split_params,
)


@pytest.mark.parametrize(("image_size", "hidden", "dim"), [(28, 8, 8), (32, 4, 16), (84, 2, 50)])
def test_conv4_feature_dim_matches_output(image_size, hidden, dim):
    net = Conv4(in_channels=3, hidden=hidden, image_size=image_size)
    assert net.feature_dim == dim
    out = net(torch.randn(2, 3, image_size, image_size))
    assert out.shape == (2, dim)


def test_conv4_has_no_buffers_and_batch_statistics_only():
    net = Conv4(hidden=4, image_size=16, out_features=5)
    assert list(net.buffers()) == []
    assert net(torch.randn(3, 1, 16, 16)).shape == (3, 5)
    # batch statistics: the same image gives different features in different batches
    x = torch.randn(4, 1, 16, 16)
    assert not torch.allclose(net(x)[:1], net(torch.cat([x[:1], 5 * x[1:]]))[:1])


def test_conv4_works_under_torch_func():
    net = Conv4(hidden=4, image_size=16)
    params = param_dict(net)
    x = torch.randn(3, 5, 1, 16, 16)
    batched = vmap(lambda xx: functional_call(net, params, (xx,)))(x)
    looped = torch.stack([features(net, params, xx) for xx in x])
    torch.testing.assert_close(batched, looped)
    g = grad(lambda p: features(net, p, x[0]).square().sum())(params)
    assert set(g) == set(params)


def test_mlp_layers_and_activation():
    net = MLP([3, 5, 2])
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear"]
    net = MLP([3, 5, 2], activation="tanh", activate_last=True)
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear", "Tanh"]
    assert net(torch.randn(4, 3)).shape == (4, 2)


def test_head_and_param_dicts_round_trip():
    net = Conv4(hidden=2, image_size=16, out_features=3)
    full = param_dict(net)
    backbone, head = split_params(full)
    assert set(head) == {"weight", "bias"} and all(not k.startswith("head.") for k in backbone)
    assert merge_params(backbone, head).keys() == full.keys()
    h = init_head(7, 3, generator=torch.Generator().manual_seed(0))
    assert h["weight"].shape == (3, 7) and h["bias"].shape == (3,)
    assert init_head(7, 3, zero=True)["weight"].abs().sum() == 0
    lin = LinearHead(7, 3)
    assert lin(torch.randn(2, 7)).shape == (2, 3)


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: MLP([3]), "sizes"),
        (lambda: MLP([3, 0]), "sizes"),
        (lambda: MLP([3, 2], activation="swish"), "activation"),
        (lambda: Conv4(hidden=0), "hidden"),
        (lambda: Conv4(image_size=8), "image_size"),
        (lambda: Conv4(out_features=0), "out_features"),
        (lambda: LinearHead(0, 2), "in_features"),
    ],
)
def test_bad_arguments_name_the_argument(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()


def test_seeded_conv4_repeats_its_weights_and_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    backbone, params, head = seeded_conv4(4, hidden=3, image_size=16, seed=11, dtype=torch.float64)
    assert torch.equal(torch.rand(1), before)  # the draw after it is the one it would have been
    _, again, _ = seeded_conv4(4, hidden=3, image_size=16, seed=11, dtype=torch.float64)
    _, other, _ = seeded_conv4(4, hidden=3, image_size=16, seed=12, dtype=torch.float64)
    assert all(torch.equal(params[k], again[k]) for k in params)
    assert not all(torch.equal(params[k], other[k]) for k in params)
    assert all(p.is_leaf and p.requires_grad and p.dtype == torch.float64 for p in params.values())
    assert head["weight"].shape == (4, backbone.feature_dim) and not head["weight"].any() and not head["bias"].any()
