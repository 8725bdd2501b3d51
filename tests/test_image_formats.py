"""miniImageNet, tieredImageNet, CIFAR-FS and FC100 loaders, on tiny files written here in each format."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from metalab.data.episodes import EpisodeSampler
from metalab.data.image_formats import (
    ArrayUnpickler,
    load_cifar_fs,
    load_fc100,
    load_mini_imagenet,
    load_tiered_imagenet,
)


def rgb_images(labels: np.ndarray, size: int) -> np.ndarray:
    """Image i is filled with its label (red), its index (green) and 7 (blue), so pixels identify images."""
    n = len(labels)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    out[..., 0] = np.asarray(labels, dtype=np.uint8)[:, None, None]
    out[..., 1] = np.arange(n, dtype=np.uint8)[:, None, None]
    out[..., 2] = 7
    return out


def dump(obj, path, protocol=pickle.HIGHEST_PROTOCOL):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def check_classes(classes, expected_counts: dict[str, int], size: int):
    assert dict(zip(classes.names, classes.counts, strict=True)) == expected_counts
    x = classes.images(0)
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, size, size)
    assert (x[:, 2] == 7).all()


def test_mini_imagenet_pickle(tmp_path, monkeypatch):
    labels = np.repeat([0, 1, 2], [4, 5, 6])
    images = rgb_images(labels, 84)
    class_dict = {"n0003": list(range(9, 15)), "n0001": list(range(0, 4)), "n0002": list(range(4, 9))}
    dump({"image_data": images, "class_dict": class_dict}, tmp_path / "mini-imagenet" / "mini-imagenet-cache-val.pkl")
    classes = load_mini_imagenet(tmp_path, split="val")
    check_classes(classes, {"n0001": 4, "n0002": 5, "n0003": 6}, 84)
    assert (classes.images(2)[:, 0] == 2).all()  # n0003 holds the images labelled 2
    assert sorted(classes.images(1)[:, 1, 0, 0].tolist()) == [4, 5, 6, 7, 8]
    monkeypatch.setenv("METALAB_DATA", str(tmp_path))
    assert load_mini_imagenet(split="val").names == classes.names
    ep = EpisodeSampler(classes, ways=3, shots=2, queries=2, image_size=None).episode(0)
    assert ep.support_x.shape == (6, 3, 84, 84)
    with pytest.raises(FileNotFoundError, match=r"mini-imagenet-cache-train\.pkl.*METALAB_DATA"):
        load_mini_imagenet(tmp_path, split="train")
    with pytest.raises(ValueError, match="split='validation' is not allowed"):
        load_mini_imagenet(tmp_path, split="validation")


def test_tiered_imagenet_npz_and_png(tmp_path):
    labels = np.repeat([0, 1, 2], 3)
    general = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    meta = {
        "label_specific": labels,
        "label_general": general,
        "label_specific_str": ["n01", "n02", "n03"],
        "label_general_str": ["animal", "tool"],
    }
    images = rgb_images(labels, 84)
    npz_dir = tmp_path / "npz"
    dump(meta, npz_dir / "test_labels.pkl")
    np.savez(npz_dir / "test_images.npz", images=images)
    classes = load_tiered_imagenet(npz_dir, split="test")
    check_classes(classes, {"n01": 3, "n02": 3, "n03": 3}, 84)
    assert classes.groups == ["animal", "animal", "tool"]

    png_dir = tmp_path / "png"
    blobs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    dump(meta, png_dir / "test_labels.pkl")
    dump(blobs, png_dir / "test_images_png.pkl")
    from_png = load_tiered_imagenet(png_dir, split="test")
    assert from_png.names == classes.names and from_png.groups == classes.groups
    for i in range(3):
        assert torch.equal(from_png.images(i), classes.images(i))

    # the variant whose labels file has only "labels"
    plain = tmp_path / "plain"
    dump({"labels": labels}, plain / "val_labels.pkl")
    np.savez(plain / "val_images.npz", images=images)
    assert load_tiered_imagenet(plain, split="val").names == ["0", "1", "2"]

    (png_dir / "test_images_png.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=r"neither test_images\.npz nor test_images_png\.pkl"):
        load_tiered_imagenet(png_dir, split="test")
    dump({"label_specific": labels[:5]}, tmp_path / "short" / "train_labels.pkl")
    np.savez(tmp_path / "short" / "train_images.npz", images=images)
    with pytest.raises(ValueError, match=r"'label_specific' has shape \(5,\); expected \(9,\)"):
        load_tiered_imagenet(tmp_path / "short")


@pytest.mark.parametrize(("loader", "prefix"), [(load_cifar_fs, "CIFAR_FS"), (load_fc100, "FC100")])
def test_cifar_style_pickles(tmp_path, loader, prefix):
    labels = [41, 41, 7, 7, 7, 93, 93]
    images = rgb_images(np.array(labels), 32)
    dump({"data": images, "labels": labels}, tmp_path / f"{prefix}_train.pickle", protocol=2)
    classes = loader(tmp_path, split="train")
    check_classes(classes, {"7": 3, "41": 2, "93": 2}, 32)
    assert (classes.images(1)[:, 0] == 41).all()
    # a file path works too, and Python-2 style byte keys are accepted
    dump({b"data": images, b"labels": labels}, tmp_path / "bytes" / f"{prefix}_test.pickle")
    assert loader(tmp_path / "bytes" / f"{prefix}_test.pickle", split="test").counts == [3, 2, 2]

    dump({"data": images[..., 0], "labels": labels}, tmp_path / "gray" / f"{prefix}_val.pickle")
    with pytest.raises(ValueError, match=r"'data' is uint8 of shape \(7, 32, 32\); expected uint8 \(N, H, W, 3\)"):
        loader(tmp_path / "gray", split="val")
    dump({"images": images}, tmp_path / "keys" / f"{prefix}_val.pickle")
    with pytest.raises(ValueError, match=r"lacks the key 'data'"):
        loader(tmp_path / "keys", split="val")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / f"{prefix}_val.pickle").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"cannot read the pickle file .*junk"):
        loader(tmp_path / "junk", split="val")
    with pytest.raises(FileNotFoundError, match=rf"{prefix}_val\.pickle"):
        loader(tmp_path / "nothing", split="val")


def test_not_found_without_path_or_env(monkeypatch):
    monkeypatch.delenv("METALAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="METALAB_DATA is unset"):
        load_fc100()


# ---------------------------------------------------------------------------------------------
# files that are not to be trusted


class RunsACommand:
    """Unpickling this calls ``os.system(command)``: what a crafted data file does to ``pickle.load``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


class WritesAFile:
    """Unpickling this calls ``builtins.exec``, which writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


#: each loader and the file it reads in ``tmp_path`` (tieredImageNet also reads its PNG pickle)
TARGETS = [
    (load_mini_imagenet, "mini-imagenet-cache-train.pkl"),
    (load_tiered_imagenet, "train_labels.pkl"),
    (load_cifar_fs, "CIFAR_FS_train.pickle"),
    (load_fc100, "FC100_train.pickle"),
]


@pytest.mark.parametrize(("loader", "filename"), TARGETS, ids=lambda t: getattr(t, "__name__", t))
@pytest.mark.parametrize(
    ("payload", "refused"), [(RunsACommand, r"(posix|nt|os)\.system"), (WritesAFile, r"builtins\.exec")]
)
def test_a_crafted_pickle_never_runs_and_is_refused_naming_the_file_and_global(
    tmp_path, loader, filename, payload, refused
):
    marker = tmp_path / "ran"
    evil = payload(f"touch {marker}") if payload is RunsACommand else payload(marker)
    images = rgb_images(np.repeat([0, 1], 2), 32)
    file = dump({"data": images, "labels": [0, 0, 1, 1], "image_data": images, "extra": evil}, tmp_path / filename)
    with pytest.raises(ValueError, match=rf"refused to load {file}: it names the Python global {refused}"):
        loader(tmp_path, split="train")
    assert not marker.exists()


def test_the_png_pickle_of_tiered_imagenet_is_read_with_the_same_restriction(tmp_path):
    marker = tmp_path / "ran"
    dump({"label_specific": np.array([0, 1])}, tmp_path / "test_labels.pkl")
    dump([b"png", WritesAFile(marker)], tmp_path / "test_images_png.pkl")
    with pytest.raises(ValueError, match=r"refused to load .*test_images_png\.pkl: .*builtins\.exec"):
        load_tiered_imagenet(tmp_path, split="test")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_arrays_scalars_and_containers_still_load_at_every_protocol(tmp_path, protocol):
    labels = np.array([3, 3, 5], dtype=np.int64)
    payload = {"data": rgb_images(labels, 32), "labels": labels, "names": ("a", b"b", 1.5, np.float32(2.0))}
    dump(payload, tmp_path / "CIFAR_FS_val.pickle", protocol=protocol)
    assert load_cifar_fs(tmp_path, split="val").counts == [2, 1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 may say numpy.core is now numpy._core
def test_a_numpy_1_pickle_naming_numpy_core_is_read():
    """Pickles written by numpy 1 (and Python 2) name ``numpy.core.multiarray``; numpy 2 reads them."""
    text = pickle.dumps(np.arange(6, dtype=np.uint8).reshape(2, 3), protocol=2)
    old = text.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != text
    array = ArrayUnpickler(io.BytesIO(old), encoding="latin1").load()
    assert array.shape == (2, 3) and array.dtype == np.uint8 and array[1, 2] == 5
