"""Sketches: merge/add/remove algebra, map fingerprints, streams and files, feature maps and their bounds, and
the memory their constructors may take."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from metalab.compressive import (
    ClippedIdentity,
    ConcatFeatures,
    Gaussian,
    ProjectedSecondMoments,
    QueryNetwork,
    RandomFourierFeatures,
    RandomQuadraticFeatures,
    Sketch,
    SketchNetwork,
    dataset_family,
    local_cluster,
    make_task,
    median_scale,
    merge_sketches,
    sketch_csv,
    sketch_stream,
)


def dyadic(n: int, d: int, seed: int) -> torch.Tensor:
    """Samples that are multiples of 1/8 in [-8, 8]: their sums are exact in float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-64, 65, (n, d), generator=g).to(torch.float64) / 8


def gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Merge, add, remove


def test_merge_of_split_data_equals_sketch_of_whole_exactly():
    fmap = ClippedIdentity(3, -8.0, 8.0)
    x = dyadic(1000, 3, 0)
    whole = fmap.sketch(x)
    parts = [fmap.sketch(x[:137]), fmap.sketch(x[137:600]), fmap.sketch(x[600:])]
    merged = merge_sketches(parts)
    assert merged.count == 1000
    assert torch.equal(merged.total, whole.total)
    assert torch.equal(merged.mean, whole.mean)
    assert torch.equal(merged.mean, x.mean(dim=0))
    # Order does not matter either.
    assert torch.equal(parts[2].merge(parts[0], parts[1]).mean, whole.mean)


@pytest.mark.parametrize(
    "fmap",
    [
        SketchNetwork(4, 16, hidden=(32,), seed=0),
        SketchNetwork(4, 16, hidden=(32,), output="clip", clip_norm=2.0, seed=0),
        RandomFourierFeatures(4, 20, scale=0.5, seed=1),
        RandomQuadraticFeatures(4, 12, input_radius=3.0, seed=2),
        ProjectedSecondMoments(4, 3, input_radius=3.0, seed=3),
    ],
    ids=["tanh-net", "clip-net", "rff", "quadratic", "second-moments"],
)
def test_merge_add_remove_for_every_map(fmap):
    x, extra = gaussian(500, 4, 1), gaussian(70, 4, 2)
    whole = fmap.sketch(x)
    merged = fmap.sketch(x[:200]).merge(fmap.sketch(x[200:]))
    torch.testing.assert_close(merged.mean, whole.mean, rtol=1e-13, atol=1e-15)
    # The whole sketch is the plain mean of the per-sample features.
    torch.testing.assert_close(whole.mean, fmap.features(x).mean(dim=0), rtol=1e-13, atol=1e-15)
    back = whole.add(extra).remove(extra)
    assert back.count == whole.count
    torch.testing.assert_close(back.mean, whole.mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(whole.add(extra).mean, fmap.sketch(torch.cat([x, extra])).mean, rtol=1e-13, atol=1e-15)


def test_distance_between_sketches_is_the_largest_gap_between_means():
    fmap = RandomFourierFeatures(3, 8, seed=0)
    x = gaussian(200, 3, 0)
    whole = fmap.sketch(x)
    assert fmap.sketch(x[:50]).merge(fmap.sketch(x[50:])).distance(whole) < 1e-14
    half = fmap.sketch(x[:100])
    assert half.distance(whole) == pytest.approx(float((half.mean - whole.mean).abs().max()), rel=1e-12)
    assert half.distance(whole) > 1e-3
    with pytest.raises(ValueError, match=r"map_id="):
        whole.distance(RandomFourierFeatures(3, 8, seed=1).sketch(x))


def test_add_remove_round_trip_is_exact_for_exact_sums():
    fmap = ClippedIdentity(2, -8.0, 8.0)
    x, extra = dyadic(300, 2, 3), dyadic(40, 2, 4)
    s = fmap.sketch(x)
    assert torch.equal(s.add(extra).remove(extra).total, s.total)
    assert torch.equal(s.remove(x[:100]).mean, fmap.sketch(x[100:]).mean)
    grown = Sketch.empty(fmap).add(x[:10]).add(x[10:])
    assert torch.equal(grown.total, s.total) and grown.count == 300


def test_remove_more_than_added_is_an_error():
    fmap = ClippedIdentity(2)
    s = fmap.sketch(dyadic(5, 2, 0))
    with pytest.raises(ValueError, match=r"count=5"):
        s.remove(dyadic(6, 2, 1))
    empty = s.remove(dyadic(5, 2, 0))
    assert empty.count == 0
    with pytest.raises(ValueError, match=r"count=0"):
        _ = empty.mean
    with pytest.raises(ValueError, match=r"count=0"):
        empty.remove(dyadic(1, 2, 0))


def test_merging_different_maps_or_sizes_is_an_error():
    x = gaussian(50, 3, 0)
    a = SketchNetwork(3, 8, hidden=(16,), seed=0).sketch(x)
    other_weights = SketchNetwork(3, 8, hidden=(16,), seed=1).sketch(x)
    other_size = SketchNetwork(3, 9, hidden=(16,), seed=0).sketch(x)
    other_kind = RandomFourierFeatures(3, 4, seed=0).sketch(x)  # also size 8
    for bad in (other_weights, other_kind):
        with pytest.raises(ValueError, match=r"map_id="):
            a.merge(bad)
    with pytest.raises(ValueError, match=r"sketch size 9"):
        a.merge(other_size)
    with pytest.raises(ValueError, match=r"a Sketch"):
        a.merge(x)
    # Same construction, same seed: same fingerprint, so these do merge.
    same = SketchNetwork(3, 8, hidden=(16,), seed=0).sketch(x)
    assert a.merge(same).count == 100


def test_a_network_changed_after_sketching_is_a_different_map():
    net = SketchNetwork(3, 6, hidden=(8,), seed=0)
    x = gaussian(40, 3, 0)
    before = net.sketch(x)
    with torch.no_grad():
        net.body[0].weight.add_(0.01)
    after = net.sketch(x)
    with pytest.raises(ValueError, match=r"map_id="):
        before.merge(after)
    with pytest.raises(ValueError, match=r"not the map that made this sketch"):
        before.add(x)  # the stored network has changed since
    with pytest.raises(ValueError, match=r"not the map that made this sketch"):
        after.remove(x, feature_map=RandomFourierFeatures(3, 3))


def test_private_sketches_merge_only_with_private_ones():
    fmap = SketchNetwork(2, 4, hidden=(8,), seed=0)
    a, b = fmap.sketch(gaussian(100, 2, 0)), fmap.sketch(gaussian(300, 2, 1))
    pa = a.with_noise(Gaussian(1.0, 1e-5))
    pb = b.with_noise(Gaussian(0.5, 1e-6))
    with pytest.raises(ValueError, match=r"private and non-private"):
        pa.merge(b)
    with pytest.raises(ValueError, match=r"private sketch"):
        pa.add(gaussian(3, 2, 2))
    with pytest.raises(ValueError, match=r"already private"):
        pa.with_noise(Gaussian(1.0, 1e-5))
    both = pa.merge(pb)
    assert both.private and both.count == 400
    assert (both.privacy.epsilon, both.privacy.delta) == (1.0, 1e-5)
    expected_std = math.hypot(100 * pa.privacy.noise_std, 300 * pb.privacy.noise_std) / 400
    assert both.privacy.noise_std == pytest.approx(expected_std, rel=1e-12)
    assert both.privacy.noise_scale is None and both.privacy.sensitivity is None
    # Removing samples from a private sketch keeps the noise in the sum: its share of the mean grows.
    fewer = pa.remove(gaussian(100, 2, 0)[:50])
    assert fewer.privacy.noise_std == pytest.approx(2 * pa.privacy.noise_std, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Streams and files


def test_stream_of_mixed_chunks_equals_in_memory_sketch():
    fmap = ClippedIdentity(3, -8.0, 8.0)
    x = dyadic(600, 3, 5)
    chunks = [x[:100], x[100:250].numpy(), x[250:250], pd.DataFrame(x[250:].numpy(), columns=list("abc"))]
    s = sketch_stream(fmap, iter(chunks))
    assert s.count == 600 and torch.equal(s.mean, fmap.sketch(x).mean)
    frame = pd.DataFrame({"c": x[:, 2].numpy(), "label": "z", "a": x[:, 0].numpy(), "b": x[:, 1].numpy()})
    by_name = sketch_stream(fmap, (frame.iloc[i : i + 64] for i in range(0, 600, 64)), columns=["a", "b", "c"])
    assert torch.equal(by_name.mean, fmap.sketch(x).mean)
    with pytest.raises(ValueError, match=r"no samples"):
        sketch_stream(fmap, iter([]))
    with pytest.raises(ValueError, match=r"columns="):
        sketch_stream(fmap, [frame], columns=["a", "b", "zz"])
    with pytest.raises(ValueError, match=r"non-numeric"):
        sketch_stream(fmap, [frame[["a", "label", "b"]]])


def test_large_csv_and_parquet_in_small_chunks(tmp_path):
    fmap = RandomFourierFeatures(4, 16, scale=0.3, seed=7)
    n = 40_000
    x = gaussian(n, 4, 11)
    frame = pd.DataFrame(x.numpy(), columns=["w", "x", "y", "z"])
    frame.insert(2, "id", [f"row{i}" for i in range(n)])
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    reference = fmap.sketch(x)

    seen = []
    inner = fmap._feature_sum
    fmap._feature_sum = lambda rows: (seen.append(rows.shape[0]), inner(rows))[1]
    try:
        s = sketch_csv(csv, fmap, columns=["w", "x", "y", "z"], chunksize=1000)
    finally:
        del fmap._feature_sum
    assert s.count == n
    assert max(seen) == 1000 and len(seen) == 40  # never more than one chunk in memory
    torch.testing.assert_close(s.mean, reference.mean, rtol=1e-12, atol=1e-14)  # CSV round trip is exact (repr)
    assert s.merge(reference).count == 2 * n  # same map: mergeable

    pytest.importorskip("pyarrow")
    parquet = tmp_path / "data.parquet"
    frame.to_parquet(parquet, row_group_size=5000)
    p = sketch_csv(parquet, fmap, columns=["w", "x", "y", "z"], chunksize=3000)
    assert p.count == n
    torch.testing.assert_close(p.mean, reference.mean, rtol=1e-12, atol=1e-14)


def test_csv_validation(tmp_path):
    fmap = ClippedIdentity(2)
    path = tmp_path / "gaps.csv"
    pd.DataFrame({"a": [1.0, None, 0.5], "b": [0.0, 1.0, 2.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"non-finite"):
        sketch_csv(path, fmap, chunksize=2)
    with pytest.raises(ValueError, match=r"columns="):
        sketch_csv(path, fmap, columns=["a", "nope"])
    with pytest.raises(ValueError, match=r"chunksize=0"):
        sketch_csv(path, fmap, chunksize=0)
    with pytest.raises(ValueError, match=r"no such file"):
        sketch_csv(tmp_path / "missing.csv", fmap)


# ---------------------------------------------------------------------------------------------
# Feature maps


def test_random_fourier_features_approximate_the_gaussian_kernel():
    scale, F = 0.8, 6000
    fmap = RandomFourierFeatures(3, F, scale=scale, seed=0)
    x, y = gaussian(6, 3, 0), gaussian(6, 3, 1)
    exact = torch.exp(-(scale**2) * ((x - y) ** 2).sum(dim=1) / 2)
    mean_cos = torch.cos((x - y) @ fmap.frequencies.T).mean(dim=1)
    inner = (fmap.features(x) * fmap.features(y)).sum(dim=1)
    # phi(x).phi(y) = mean cos(w^T(x-y)), to the float32 rounding of cos and sin (measured 3e-10 here)
    torch.testing.assert_close(inner, mean_cos, rtol=0.0, atol=1e-8)
    t = x @ fmap.frequencies.T
    in_float64 = torch.cat([torch.cos(t), torch.sin(t)], dim=1) / math.sqrt(F)
    assert float((fmap.features(x) - in_float64).abs().max()) < 1e-6 * float(t.abs().max()) / math.sqrt(F)
    assert float((mean_cos - exact).abs().max()) < 4 / math.sqrt(F)
    # Default c = 1/sqrt(F): unit-norm features, k(x, x) = 1.
    torch.testing.assert_close(fmap.features(x).norm(dim=1), torch.ones(6, dtype=torch.float64))


def test_sketch_network_features_are_its_tanh_output_and_stay_in_the_box():
    net = SketchNetwork(3, 40, hidden=(16,), seed=0)
    x = gaussian(300, 3, 0)
    with torch.no_grad():
        differentiable = net(x.float()).double()  # torch.tanh; the features use 2 sigmoid(2h) - 1
    torch.testing.assert_close(net.features(x), differentiable, rtol=0.0, atol=1e-6)
    huge = net.features(1e5 * x)  # pre-activations far into saturation: still inside [-1, 1]
    assert float(huge.abs().max()) <= 1.0 and float(huge.abs().max()) > 0.999


def test_second_moment_maps_measure_the_second_moment():
    x = gaussian(400, 5, 3) * 0.3  # inside the ball of radius 3: no clipping
    q = RandomQuadraticFeatures(5, 20, input_radius=3.0, seed=0)
    moment = x.T @ x / x.shape[0]
    torch.testing.assert_close(q.sketch(x).mean, q.measure(moment), rtol=1e-12, atol=1e-14)
    p = ProjectedSecondMoments(5, 4, input_radius=3.0, seed=0)
    assert p.sketch_size == 10
    projected = p.projection @ moment @ p.projection.T
    z = p.sketch(x).mean
    # Isometric: the squared norm of the sketch is the squared Frobenius norm of A C A^T.
    torch.testing.assert_close(z.pow(2).sum(), projected.pow(2).sum(), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(z[0], projected[0, 0], rtol=1e-12, atol=0.0)
    # Outside the ball: clipped (scaled onto the sphere), or rejected.
    far = torch.full((1, 5), 10.0, dtype=torch.float64)
    torch.testing.assert_close(q.features(far), q.features(far / far.norm() * 3.0))
    with pytest.raises(ValueError, match=r"input_radius=3.0"):
        RandomQuadraticFeatures(5, 20, input_radius=3.0, clip_inputs=False).features(far)


def test_concatenated_maps_and_pooling_for_batches_of_tasks():
    first, second = ClippedIdentity(3, -5, 5), RandomQuadraticFeatures(3, 6, input_radius=5.0)
    both = ConcatFeatures([first, second])
    x = gaussian(50, 3, 0)
    torch.testing.assert_close(both.sketch(x).mean, torch.cat([first.sketch(x).mean, second.sketch(x).mean]))
    assert both.bound.diameter_l1 == pytest.approx(first.bound.diameter_l1 + second.bound.diameter_l1)
    net = SketchNetwork(3, 5, hidden=(8,), seed=0)
    tasks = torch.randn(4, 30, 3)
    pooled = net.pool(tasks)
    assert pooled.shape == (4, 5)
    torch.testing.assert_close(pooled[1].double(), net.sketch(tasks[1]).mean, rtol=1e-5, atol=1e-6)
    mask = torch.zeros(4, 30)
    mask[:, :10] = 1
    torch.testing.assert_close(net.pool(tasks, mask), net.pool(tasks[:, :10]))
    pooled.sum().backward()
    assert net.body[0].weight.grad is not None and bool(torch.isfinite(net.body[0].weight.grad).all())


def test_invalid_arguments_name_themselves():
    cases = [
        (lambda: SketchNetwork(3, 0), r"sketch_size=0"),
        (lambda: SketchNetwork(3, 2000, max_sketch_size=1000), r"sketch_size=2000"),
        (lambda: SketchNetwork(3, 4, output="relu"), r"output='relu'"),
        (lambda: SketchNetwork(3, 4, output="clip", clip_norm=0.0), r"clip_norm=0.0"),
        (lambda: RandomFourierFeatures(3, 600, max_sketch_size=1000), r"sketch_size=1200"),
        (lambda: RandomFourierFeatures(3, 4, scale=-1.0), r"scale=-1.0"),
        (lambda: RandomQuadraticFeatures(3, 4, input_radius=float("inf")), r"input_radius=inf"),
        (lambda: ProjectedSecondMoments(3, 50, max_sketch_size=1000), r"proj_dim\*\(proj_dim\+1\)/2=1275"),
        (lambda: ClippedIdentity(2, 1.0, 1.0), r"high=1.0"),
        (lambda: ConcatFeatures([ClippedIdentity(2), ClippedIdentity(3)]), r"input dimensions"),
        (lambda: ClippedIdentity(2).sketch(torch.tensor([[0.0, float("nan")]])), r"non-finite"),
        (lambda: ClippedIdentity(2).sketch(torch.zeros(4, 3)), r"shape \(4, 3\)"),
        (lambda: ClippedIdentity(2).sketch(np.zeros(3)), r"shape \(3,\)"),
        (lambda: median_scale(gaussian(10, 2, 0), k=11), r"k=11"),
        (lambda: Sketch.empty("not a map"), r"feature_map="),
        (lambda: merge_sketches([]), r"sketches=\[\]"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()


def test_median_scale_matches_the_median_distance():
    x = gaussian(200, 2, 0)
    scale = median_scale(x, k=200)
    assert scale == pytest.approx(1.0 / float(torch.pdist(x).median()))


# ---------------------------------------------------------------------------------------------
# No size argument may exhaust the machine


def test_sizes_beyond_the_memory_are_refused_by_name_before_allocating():
    with pytest.raises(ValueError, match=r"input_dim=1000000000 and n_frequencies=100 are not allowed: .* GB"):
        RandomFourierFeatures(10**9, 100)
    with pytest.raises(ValueError, match=r"input_dim=1000000000 .* Sketch-Network"):
        SketchNetwork(10**9, 60)
    with pytest.raises(ValueError, match=r"hidden=\(100000, 100000\)"):
        SketchNetwork(2, 60, hidden=(10**5, 10**5))
    with pytest.raises(ValueError, match=r"input_dim=1000000000 and sketch_size=60"):
        RandomQuadraticFeatures(10**9, 60)
    with pytest.raises(ValueError, match=r"task.d=100000 .* Query-Network"):
        QueryNetwork(make_task("pca", 10**5), 60)  # d + d^2 outputs
    with pytest.raises(ValueError, match=r"batch=1000000000 and n=100 and d=2"):
        dataset_family("mixtures", n=100, d=2, k=3).sample(10**9)
    with pytest.raises(ValueError, match=r"n_workers=1000000"):
        local_cluster(10**6)


def test_the_limit_is_the_memory_available_now(monkeypatch):
    monkeypatch.setattr("metalab.compressive.bounds.available_bytes", lambda: 2**20)  # 1 MB free
    RandomFourierFeatures(100, 100)  # 80 kB of frequencies
    with pytest.raises(ValueError, match=r"n_frequencies=1000 .* more than the 1 MB"):
        RandomFourierFeatures(200, 1000)  # 1.6 MB
    with pytest.raises(ValueError, match=r"proj_dim=1000"):
        ProjectedSecondMoments(200, 1000)
    with pytest.raises(ValueError, match=r"hidden=\(1024, 1024\)"):
        SketchNetwork(2, 8, hidden=(1024, 1024))
    with pytest.raises(ValueError, match=r"width=1024"):
        QueryNetwork(make_task("kmeans", 2), 8, width=1024, blocks=2)
