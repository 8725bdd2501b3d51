"""Sinusoid task generator and digit-pair classification tasks (scikit-learn digits and MNIST files)."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from metalab.core import generator
from metalab.data.digit_pairs import (
    DigitPairs,
    digit_pair_pools,
    digit_split_sizes,
    load_mnist,
    read_idx,
    split_digits,
)
from metalab.data.sinusoid import SinusoidTasks

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Sinusoid


def test_maml_protocol_shapes_ranges_and_function():
    tasks = SinusoidTasks.preset("maml")
    batch = tasks.sample(500, query_shots=7, generator=generator(0, "t"))
    assert batch.support_x.shape == (500, 10, 1) and batch.query_y.shape == (500, 7, 1) and batch.n_tasks == 500
    assert 0.1 <= float(batch.amplitude.min()) and float(batch.amplitude.max()) <= 5.0
    assert 0.0 <= float(batch.phase.min()) and float(batch.phase.max()) <= math.pi
    assert bool((batch.frequency == 1).all())
    assert float(batch.support_x.abs().max()) <= 5.0 and float(batch.support_x.std()) > 2.5
    want = batch.amplitude[:, None, None] * torch.sin(batch.query_x - batch.phase[:, None, None])
    assert torch.allclose(batch.query_y, want)
    assert torch.allclose(batch.curve(batch.support_x[0, :, 0])[0], batch.support_y[0, :, 0])


def test_frequency_variant_and_seeds():
    tasks = SinusoidTasks.preset("mlsr")
    batch = tasks.sample(300, seed=3)
    assert batch.support_x.shape == (300, 20, 1)
    assert 0.5 <= float(batch.frequency.min()) < 0.6 and 1.9 < float(batch.frequency.max()) <= 2.0
    assert torch.equal(tasks.sample(300, seed=3).support_y, batch.support_y)
    test = tasks.fixed_tasks(50, seed=3)
    assert torch.equal(test.query_x, tasks.fixed_tasks(50, seed=3).query_x)
    assert not torch.equal(test.support_x, batch.support_x[:50])
    assert SinusoidTasks.preset("maml", dtype=torch.float64).sample(2).support_x.dtype == torch.float64


def test_sinusoid_bad_arguments():
    with pytest.raises(ValueError, match="amplitude="):
        SinusoidTasks(amplitude=(5.0, 0.1))
    with pytest.raises(ValueError, match="shots="):
        SinusoidTasks.preset("maml").sample(4, shots=0)
    with pytest.raises(ValueError, match="preset="):
        SinusoidTasks.preset("omniglot")
    with pytest.raises(ValueError, match="n_tasks="):
        SinusoidTasks().sample(0)


# ---------------------------------------------------------------------------------------------
# Digit pairs


def _tagged_pool(per_class=12):
    """Images whose every pixel equals the digit, so each sample shows which digit it is."""
    labels = np.repeat(np.arange(10), per_class)
    images = np.repeat(labels[:, None, None], 4, 1).repeat(4, 2).astype(np.uint8)
    return DigitPairs(images, labels)


def test_labels_are_balanced_and_follow_the_pair():
    pool = _tagged_pool()
    batch = pool.sample(200, shots=3, query_shots=4, generator=generator(0, "pairs"))
    assert len(batch) == 200 and batch.support_x.shape == (200, 6, 16) and batch.query_y.shape == (200, 8)
    assert bool((batch.support_y.sum(1) == 3).all()) and bool((batch.query_y.sum(1) == 4).all())
    assert bool((batch.classes[:, 0] != batch.classes[:, 1]).all())
    for x, y in ((batch.support_x, batch.support_y), (batch.query_x, batch.query_y)):
        digit_shown = x[..., 0].long()
        assert torch.equal(digit_shown, torch.gather(batch.classes, 1, y))  # label c always shows pairs[t, c]
    # a digit's label changes from task to task
    first_is_three = batch.classes[:, 0] == 3
    second_is_three = batch.classes[:, 1] == 3
    assert bool(first_is_three.any()) and bool(second_is_three.any())


def test_fixed_pair_is_permuted_per_task():
    pool = _tagged_pool()
    batch = pool.sample(64, shots=2, pairs=(4, 7), seed=1)
    assert {tuple(p) for p in batch.classes.tolist()} == {(4, 7), (7, 4)}
    fixed = pool.sample(8, shots=2, pairs=[(4, 7)] * 8, permute_labels=False, seed=1)
    assert {tuple(p) for p in fixed.classes.tolist()} == {(4, 7)}


def test_digit_pair_errors():
    pool = _tagged_pool()
    with pytest.raises(ValueError, match="pair=.*two different digits"):
        pool.sample(2, shots=1, pairs=(3, 3))
    with pytest.raises(ValueError, match="pair=.*digits among"):
        pool.sample(2, shots=1, pairs=(3, 11))
    with pytest.raises(ValueError, match="shots=13"):
        pool.sample(2, shots=13, query_shots=1)
    with pytest.raises(ValueError, match="shots=.*query_shots=6"):
        pool.sample(2, shots=7, query_shots=6)
    with pytest.raises(ValueError, match="shots=0"):
        pool.sample(2, shots=0)
    with pytest.raises(ValueError, match="pairs has 3"):
        pool.sample(2, shots=1, pairs=[(1, 2), (2, 3), (3, 4)])


def test_sklearn_digits_default():
    pool = DigitPairs.from_sklearn()
    assert pool.digits == tuple(range(10)) and pool.x.shape == (1797, 64) and float(pool.x.max()) == 1.0
    batch = pool.sample(5, shots=5, query_shots=15, seed=0)
    assert batch.support_x.shape == (5, 10, 64) and batch.support_x.dtype == torch.float32
    images = DigitPairs.from_sklearn(flatten=False).sample(2, shots=1, seed=0)
    assert images.support_x.shape == (2, 2, 1, 8, 8)
    with pytest.raises(ValueError, match="shots=100"):
        pool.sample(1, shots=100, query_shots=100)


@pytest.mark.parametrize("fraction", [0.5, 0.3])
def test_digit_split_is_a_deterministic_partition_of_every_class(fraction):
    from sklearn.datasets import load_digits

    data = load_digits()
    (train_x, train_y), (test_x, test_y) = split_digits(fraction)
    (again_x, _), _ = split_digits.__wrapped__(fraction)  # recomputed, not the cached arrays
    assert np.array_equal(train_x, again_x)
    for d in range(10):
        mine = data.images[data.target == d]
        assert (train_y == d).sum() == round(fraction * len(mine))
        # the class's images in order: first the meta-training ones, then the test ones, each image once
        assert np.array_equal(np.concatenate([train_x[train_y == d], test_x[test_y == d]]), mine)
    sizes = digit_split_sizes(fraction)
    assert sizes[0] == min((train_y == 0).sum(), (test_y == 0).sum()) and min(sizes.values()) >= 50
    with pytest.raises(ValueError, match="train_fraction=1.0 is not allowed"):
        split_digits(1.0)


def test_digit_pair_pools_hold_the_chosen_digits_of_each_half():
    train, test = digit_pair_pools((3, 5, 8))
    assert train.digits == test.digits == (3, 5, 8)
    (_, train_y), (_, test_y) = split_digits(0.5)
    assert train.class_size(5) == (train_y == 5).sum() and test.class_size(8) == (test_y == 8).sum()
    assert float(train.x.max()) <= 1.0 and train.x.shape[1] == 64
    batch = test.sample(4, shots=2, query_shots=3, seed=1)
    assert set(batch.classes.flatten().tolist()) <= {3, 5, 8}


def _write_idx(path, array, compress):
    code = {np.uint8: 0x08}[array.dtype.type]
    raw = (
        struct.pack(">BBBB", 0, 0, code, array.ndim)
        + struct.pack(">" + "I" * array.ndim, *array.shape)
        + array.tobytes()
    )
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = np.tile(np.arange(10, dtype=np.uint8), 3)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    got_images, got_labels = load_mnist(tmp_path, "train")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    pool = DigitPairs.from_mnist(tmp_path)
    assert pool.x.shape == (30, 784) and float(pool.x.max()) <= 1.0
    assert pool.sample(3, shots=1, query_shots=2, seed=0).query_x.shape == (3, 4, 784)
    with pytest.raises(FileNotFoundError, match="t10k"):
        load_mnist(tmp_path, "test")


def test_mnist_npz_and_bad_files(tmp_path):
    rng = np.random.default_rng(1)
    x_test = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y_test = np.repeat(np.arange(10), 2)
    np.savez(tmp_path / "mnist.npz", x_train=x_test, y_train=y_test, x_test=x_test, y_test=y_test)
    images, labels = load_mnist(tmp_path, "test")
    assert np.array_equal(images, x_test) and np.array_equal(labels, y_test)
    assert load_mnist(tmp_path / "mnist.npz")[0].shape == (20, 28, 28)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="data bytes"):
        read_idx(short)
    with pytest.raises(ValueError, match="split="):
        load_mnist(tmp_path, "valid")
    with pytest.raises(FileNotFoundError, match="path="):
        load_mnist(tmp_path / "missing")
