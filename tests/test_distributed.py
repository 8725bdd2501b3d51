"""Sketching on Dask: partitions sketched on a LocalCluster and merged equal the single-process sketch.

Needs ``dask[distributed]`` (``pip install metalab[scale]``); skipped without it, except on CI
(``CI=true``), where a missing dask is a failure.
"""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from metalab.compressive import ClippedIdentity, RandomFourierFeatures, Sketch, SketchNetwork
from metalab.compressive.distributed import sketch_dask, sketch_rows

torch.set_num_threads(1)

N, D = 6000, 4
COLUMNS = ["a", "b", "c", "d"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required on CI)")
    pytest.skip(reason, allow_module_level=True)


try:
    import cloudpickle
    import dask
    import dask.array as da
    import dask.dataframe as dd
    import distributed
except ImportError as err:
    _unavailable(f"dask is not installed ({err}): `pip install metalab[scale]` to run the Dask tests")


LOCAL_CLUSTER = distributed.LocalCluster


@pytest.fixture(scope="module")
def client():
    """Two single-threaded workers in this process, talking TCP on 127.0.0.1 (so tasks are pickled)."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    with cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N, D))


def as_array(x: np.ndarray):
    return da.from_array(x, chunks=(700, 2))  # uneven row blocks, columns split too


def as_frame(x: np.ndarray):
    frame = pd.DataFrame(x, columns=COLUMNS).assign(label=np.arange(len(x)) % 3)
    return dd.from_pandas(frame, npartitions=5)


def feature_columns(collection):
    return None if collection is as_array else COLUMNS


MAPS = {
    "rff": lambda: RandomFourierFeatures(D, 16, scale=0.7, seed=1),
    "network": lambda: SketchNetwork(D, 24, hidden=(16, 16), seed=2),
}


# ---------------------------------------------------------------------------------------------
# Shipping feature maps


@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)])
def test_feature_maps_survive_pickling_with_their_fingerprint(name, dumps, loads, samples):
    fmap = MAPS[name]()
    copy = loads(dumps(fmap))
    assert copy.fingerprint() == fmap.fingerprint()
    assert torch.equal(copy.features(samples), fmap.features(samples))


# ---------------------------------------------------------------------------------------------
# Distributed sketch == single-process sketch


@pytest.mark.parametrize("collection", [as_array, as_frame], ids=["array", "dataframe"])
@pytest.mark.parametrize("name", sorted(MAPS))
def test_cluster_sketch_equals_single_process_sketch(client, samples, name, collection):
    fmap = MAPS[name]()
    reference = Sketch.of(fmap, samples)
    sketch = sketch_dask(fmap, collection(samples), client=client, columns=feature_columns(collection))
    assert sketch.count == N
    assert sketch.map_id == reference.map_id
    assert sketch.feature_map is fmap
    assert torch.allclose(sketch.mean, reference.mean, rtol=0, atol=1e-13)
    # the merge tree follows the partition order, so threads in this process give the same bits
    threaded = sketch_dask(fmap, collection(samples), client="threads", columns=feature_columns(collection))
    assert torch.equal(threaded.total, sketch.total)


@pytest.mark.parametrize("name", sorted(MAPS))
def test_sketch_rows_in_one_process_or_on_dask_is_the_one_pass_sketch(client, samples, name):
    fmap = MAPS[name]()
    reference = Sketch.of(fmap, samples)
    rows = torch.from_numpy(samples)
    assert torch.equal(sketch_rows(fmap, rows).total, reference.total)
    for scheduler in ("threads", client):
        on_dask = sketch_rows(fmap, rows, scheduler, partitions=5)
        assert on_dask.count == N and torch.allclose(on_dask.mean, reference.mean, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="partitions=0 is not allowed"):
        sketch_rows(fmap, rows, "threads", partitions=0)


def test_cluster_sketch_is_exact_when_the_sums_are(client):
    x = torch.randint(-64, 65, (N, D), generator=torch.Generator().manual_seed(3)).to(torch.float64) / 8
    fmap = ClippedIdentity(D, -8.0, 8.0)
    sketch = sketch_dask(fmap, da.from_array(x.numpy(), chunks=(500, D)), client=client, batch_rows=64, split_every=3)
    assert torch.equal(sketch.mean, x.mean(dim=0))


def test_empty_partitions_count_nothing(samples):
    head = as_frame(samples).map_partitions(lambda part: part[part.index < 1000])  # partitions 1 to 4 left empty
    fmap = MAPS["rff"]()
    sketch = sketch_dask(fmap, head, columns=COLUMNS, client="threads")
    assert sketch.count == 1000
    assert torch.allclose(sketch.mean, Sketch.of(fmap, samples[:1000]).mean, rtol=0, atol=1e-13)


def assert_no_default_client():
    """The clients sketch_dask makes never become dask's default scheduler (later computes would go to them)."""
    with pytest.raises(ValueError, match="No global client"):
        distributed.get_client()


def test_scheduler_address_and_default_scheduler(client, samples):
    fmap = MAPS["rff"]()
    by_client = sketch_dask(fmap, as_array(samples), client=client)
    by_address = sketch_dask(fmap, as_array(samples), client=client.scheduler.address)
    assert torch.equal(by_address.total, by_client.total)
    assert_no_default_client()
    with dask.config.set(scheduler="threads"):
        by_default = sketch_dask(fmap, as_array(samples))
    assert torch.equal(by_default.total, by_client.total)


def test_local_option_starts_a_cluster_on_localhost_and_closes_it(monkeypatch, samples):
    """``client="local"`` with the cluster's workers kept in this process (worker processes cost seconds each)."""
    started = []

    def in_process_cluster(**options):
        cluster = LOCAL_CLUSTER(**options, processes=False, protocol="tcp://")
        started.append((options, cluster))
        return cluster

    monkeypatch.setattr(distributed, "LocalCluster", in_process_cluster)
    fmap = MAPS["network"]()
    sketch = sketch_dask(fmap, as_array(samples), client="local")
    assert torch.allclose(sketch.mean, Sketch.of(fmap, samples).mean, rtol=0, atol=1e-13)
    sketch_dask(fmap, as_array(samples), client="local", n_workers=1)
    (default, first), (one, second) = started
    assert (default["host"], default["n_workers"], default["threads_per_worker"]) == ("127.0.0.1", os.cpu_count(), 1)
    assert one["n_workers"] == 1
    assert first.status.name == second.status.name == "closed"
    assert_no_default_client()


def test_distributed_sketch_merges_with_a_local_one(client, samples):
    fmap = MAPS["network"]()
    remote = sketch_dask(fmap, as_array(samples[:4000]), client=client)
    local = Sketch.of(fmap, samples[4000:])
    whole = Sketch.of(fmap, samples)
    merged = remote.merge(local)
    assert merged.count == N
    assert torch.allclose(merged.mean, whole.mean, rtol=0, atol=1e-13)
    # the result carries the map, so rows can be added to it here
    assert torch.allclose(remote.add(samples[4000:]).mean, whole.mean, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (np.zeros((10, D)), {}, "data is a numpy.ndarray, which is not allowed: a dask.array.Array"),
        (torch.zeros(10, D), {}, "data is a torch.Tensor, which is not allowed"),
        (pd.DataFrame(np.zeros((10, D)), columns=COLUMNS), {}, "which is not allowed: a dask.array.Array"),
        (da.zeros((10, D + 1), chunks=5), {}, r"data has shape \(10, 5\), which is not allowed: \(N, 4\)"),
        (da.zeros(10, chunks=5), {}, r"data has shape \(10,\), which is not allowed"),
        (da.zeros((10, D), chunks=5), {"columns": COLUMNS}, "columns=.* is not allowed with a dask.array"),
        (None, {"columns": ["a", "x"]}, r"columns=\['a', 'x'\] is not allowed: \['x'\] not among"),
        (None, {}, "data has 5 columns .* which is not allowed: feature_map.input_dim=4"),
        (None, {"columns": ["a", "b"]}, "data has 2 columns .* feature_map.input_dim=4"),
        (da.zeros((10, D), chunks=5), {"split_every": 1}, "split_every=1 is not allowed"),
        (da.zeros((10, D), chunks=5), {"batch_rows": 0}, "batch_rows=0 is not allowed"),
        (da.zeros((10, D), chunks=5), {"client": 3}, "client=3 is not allowed: None, 'threads', 'local'"),
        (da.zeros((10, D), chunks=5), {"client": "nowhere"}, "client='nowhere' is not allowed: no Dask scheduler"),
        (da.zeros((10, D), chunks=5), {"n_workers": 2}, "n_workers=2 is not allowed with client=None"),
        (da.zeros((10, D), chunks=5), {"client": "local", "n_workers": 0}, "n_workers=0 is not allowed"),
        (da.zeros((0, D), chunks=5), {}, "data is not allowed: it holds no samples"),
    ],
)
def test_bad_input_is_rejected_naming_the_argument(samples, data, kwargs, message):
    if data is None:
        data = as_frame(samples)
    with pytest.raises(ValueError, match=message):
        sketch_dask(MAPS["rff"](), data, **kwargs)


def test_bad_rows_are_rejected_from_the_workers(client, samples):
    bad = samples.copy()
    bad[2500, 1] = np.nan
    with pytest.raises(ValueError, match="data partition 3 contains non-finite values"):
        sketch_dask(MAPS["rff"](), da.from_array(bad, chunks=(700, D)), client=client)
    text = as_frame(samples)[COLUMNS].assign(b="x")
    with pytest.raises(ValueError, match=r"data partition \d has non-numeric column\(s\) \['b'\]"):
        sketch_dask(MAPS["rff"](), text)


def test_not_a_feature_map_is_rejected(samples):
    with pytest.raises(ValueError, match="feature_map=.* is not allowed: a metalab.compressive FeatureMap"):
        sketch_dask(torch.nn.Linear(D, 3), as_array(samples))


class LossyMap(ClippedIdentity):
    """A map that comes out of pickling with other parameters: what a map that does not survive the trip does."""

    def __setstate__(self, state):
        self.__dict__.update(state, high=0.5)


def test_a_map_that_changes_on_the_way_to_the_workers_is_an_error(client, samples):
    fmap = LossyMap(D)
    assert pickle.loads(pickle.dumps(fmap)).fingerprint() != fmap.fingerprint()
    with pytest.raises(RuntimeError, match="feature_map has fingerprint .* on the workers"):
        sketch_dask(fmap, as_array(samples), client=client)


def test_missing_dask_names_the_extra_to_install(monkeypatch, samples):
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r"pip install metalab\[scale\]"):
        sketch_dask(MAPS["rff"](), as_array(samples))
    with pytest.raises(ImportError, match=r"pip install metalab\[scale\]"):
        sketch_rows(MAPS["rff"](), samples, "threads")
    assert sketch_rows(MAPS["rff"](), samples).count == N  # one process needs no Dask
