"""Episode sampler, image folders/zips, class splits, and the embedded glyph and digit data sets."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalab.data.episodes import (
    Episode,
    EpisodeBatch,
    EpisodeSampler,
    episode_samplers,
)
from metalab.data.glyphs import digit_classes, glyph_classes
from metalab.data.image_folders import ImageClasses, load_image_folder


def class_pattern(k: int, j: int, size: int = 12) -> np.ndarray:
    """Image j of class k: a class-specific random pattern with one instance pixel flipped (uint8)."""
    base = (np.random.default_rng(k).random((size, size)) < 0.3).astype(np.uint8) * 255
    base.flat[j % base.size] ^= 255
    return base


def write_layout(root: Path, alphabets: dict[str, int], per_class: int = 6, size: int = 12, offset: int = 0) -> Path:
    """An Omniglot-layout folder ``root/alphabet/characterNN/*.png``; returns ``root``."""
    k = offset
    for alphabet, n_chars in alphabets.items():
        for c in range(1, n_chars + 1):
            folder = root / alphabet / f"character{c:02d}"
            folder.mkdir(parents=True)
            for j in range(per_class):
                Image.fromarray(class_pattern(k, j, size)).save(folder / f"{k:04d}_{j + 1:02d}.png")
            k += 1
    return root


def zip_folder(folder: Path, target: Path, top: str | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for f in sorted(folder.rglob("*.png")):
            rel = f.relative_to(folder).as_posix()
            archive.write(f, f"{top}/{rel}" if top else rel)
    return target


@pytest.fixture
def layout(tmp_path) -> Path:
    return write_layout(tmp_path / "data", {"Alpha": 4, "Beta": 3, "Gamma": 5})


# ---------------------------------------------------------------------------------------------
# Folders and zips


def test_folder_and_zip_give_the_same_classes(layout, tmp_path):
    folder = load_image_folder(layout)
    archive = load_image_folder(zip_folder(layout, tmp_path / "data.zip", top="data"))
    assert len(folder) == len(archive) == 12
    assert folder.names == archive.names
    assert folder.names[0] == "Alpha/character01" and folder.groups[0] == "Alpha"
    assert folder.counts == [6] * 12 and folder.n_images == 72
    for i in (0, 7, 11):
        x = folder.images(i)
        assert x.dtype == torch.uint8 and x.shape == (6, 1, 12, 12)
        assert torch.equal(x, archive.images(i))
    assert np.array_equal(folder.images(0)[0, 0].numpy(), class_pattern(0, 0))
    assert torch.equal(load_image_folder(layout, invert=True).images(0), 255 - folder.images(0))
    assert load_image_folder(layout, image_size=(8, 6)).images(3).shape == (6, 1, 8, 6)
    assert load_image_folder(layout, mode="RGB").images(0).shape == (6, 3, 12, 12)


def test_images_are_decoded_once_and_shared_by_subsets(layout):
    classes = load_image_folder(layout)
    a = classes.images(2)
    assert classes.images(2) is a
    assert classes.subset([2, 5]).images(0) is a


def test_class_splits_are_disjoint_and_seeded(layout):
    classes = load_image_folder(layout)
    parts = classes.split({"train": 0.5, "val": 0.25, "test": 0.25}, seed=3)
    names = [set(p.names) for p in parts.values()]
    assert [len(n) for n in names] == [6, 3, 3]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert set().union(*names) == set(classes.names)
    again = classes.split({"train": 0.5, "val": 0.25, "test": 0.25}, seed=3)
    assert [p.names for p in again.values()] == [p.names for p in parts.values()]
    other = classes.split({"train": 0.5, "val": 0.25, "test": 0.25}, seed=4)
    assert [p.names for p in other.values()] != [p.names for p in parts.values()]
    counts = classes.split({"train": 7, "test": 2})
    assert [len(p) for p in counts.values()] == [7, 2]
    by_group = classes.split({"train": 2, "test": 1}, by="group")
    groups = [set(p.groups) for p in by_group.values()]
    assert len(groups[0]) == 2 and len(groups[1]) == 1 and not groups[0] & groups[1]


def test_rotations_multiply_classes_and_rotate_pixels():
    pattern = np.zeros((5, 5), dtype=np.uint8)
    pattern[0, 1] = 255  # asymmetric: every rotation moves this pixel somewhere else
    classes = ImageClasses.from_tensors([torch.from_numpy(np.stack([pattern] * 3))], names=["only"])
    sampler = EpisodeSampler(classes, ways=4, shots=1, queries=0, image_size=None, rotations=True)
    assert sampler.n_classes == 4
    original = torch.from_numpy(pattern).float() / 255
    for index in range(3):
        episode = sampler.episode(index)
        assert sorted(episode.classes.tolist()) == [0, 1, 2, 3]
        for label, c in enumerate(episode.classes.tolist()):
            expected = torch.rot90(original, k=c % 4, dims=(0, 1))  # counter-clockwise quarter turns
            assert torch.equal(episode.support_x[label, 0], expected)
    assert sampler.class_name(1) == "only@rot90"
    assert EpisodeSampler(classes, ways=2, shots=1, queries=0, rotations=[0, 180]).n_classes == 2


def test_episode_shapes_labels_and_resizing(layout):
    classes = load_image_folder(layout)
    sampler = EpisodeSampler(classes, ways=5, shots=2, queries=3, image_size=28, rotations=True, seed=1)
    ep = sampler.sample()
    assert isinstance(ep, Episode)
    assert ep.support_x.shape == (10, 1, 28, 28) and ep.query_x.shape == (15, 1, 28, 28)
    assert ep.support_x.dtype == torch.float32 and ep.support_y.dtype == torch.int64
    assert 0.0 <= ep.support_x.min() and ep.support_x.max() <= 1.0 and ep.support_x.max() > 0.5
    assert torch.equal(ep.support_y, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    assert torch.equal(torch.bincount(ep.query_y), torch.full((5,), 3))
    assert len(set(ep.classes.tolist())) == 5
    # support and query images of one class are distinct draws (no image reused within an episode)
    sampler1 = EpisodeSampler(classes, ways=3, shots=3, queries=3, image_size=None)
    e = sampler1.episode(0)
    for label in range(3):
        imgs = torch.cat([e.support_x[e.support_y == label], e.query_x[e.query_y == label]]).flatten(1)
        assert len(torch.unique(imgs, dim=0)) == 6
    normed = EpisodeSampler(classes, ways=2, shots=1, queries=1, normalize=(0.5, 0.25), image_size=None).episode(0)
    plain = EpisodeSampler(classes, ways=2, shots=1, queries=1, image_size=None).episode(0)
    assert torch.allclose(normed.support_x, (plain.support_x - 0.5) / 0.25)


def test_sampling_is_deterministic_by_seed_and_batches_match_single_draws(layout):
    classes = load_image_folder(layout)
    a = EpisodeSampler(classes, ways=3, shots=1, queries=2, rotations=True, seed=7)
    b = EpisodeSampler(load_image_folder(layout), ways=3, shots=1, queries=2, rotations=True, seed=7)
    c = EpisodeSampler(classes, ways=3, shots=1, queries=2, rotations=True, seed=8)
    batch = a.sample_batch(4)
    assert isinstance(batch, EpisodeBatch) and len(batch) == 4
    assert batch.support_x.shape == (4, 3, 1, 28, 28) and batch.query_y.shape == (4, 6)
    singles = [b.sample() for _ in range(4)]
    for i in range(4):
        assert torch.equal(batch[i].support_x, singles[i].support_x)
        assert torch.equal(batch[i].query_x, singles[i].query_x)
        assert torch.equal(batch[i].classes, singles[i].classes)
    assert torch.equal(a.batch(0, 4).query_x, batch.query_x)
    assert not torch.equal(c.sample_batch(4).support_x, batch.support_x)
    state = torch.get_rng_state()
    a.episode(123)
    assert torch.equal(torch.get_rng_state(), state), "the sampler must not touch the global RNG"


def test_episode_samplers_per_split(layout):
    samplers = episode_samplers(load_image_folder(layout), {"train": 0.5, "test": 0.5}, ways=3, shots=1, queries=1)
    train, test = samplers["train"], samplers["test"]
    train_names = {train.class_name(c) for c in train.sample_batch(5).classes.flatten().tolist()}
    test_names = {test.class_name(c) for c in test.sample_batch(5).classes.flatten().tolist()}
    assert not train_names & test_names


# ---------------------------------------------------------------------------------------------
# Errors


def test_bad_arguments_name_themselves(layout):
    classes = load_image_folder(layout)  # 12 classes x 6 images
    cases = [
        (dict(ways=13), r"ways=13 is not allowed: .*12"),
        (dict(ways=49, rotations=True), r"ways=49 .*12 classes x 4 rotations"),
        (dict(ways=-1), r"ways=-1 is not allowed"),
        (dict(shots=0), r"shots=0 is not allowed"),
        (dict(shots=-2), r"shots=-2 is not allowed"),
        (dict(queries=-1), r"queries=-1 is not allowed"),
        (dict(shots=4, queries=3), r"shots=4 \+ queries=3 = 7 is not allowed: class 'Alpha/character01' has only 6"),
        (dict(rotations=[0, 45]), r"rotations=\[0, 45\] is not allowed"),
        (dict(image_size=(28, 20), rotations=True), r"image_size=\(28, 20\) is not allowed with rotations"),
        (dict(image_size=0), r"image_size=0 is not allowed"),
        (dict(normalize=(0.5, 0.0)), r"normalize=\(0.5, 0.0\) is not allowed"),
        (dict(seed=-1), r"seed=-1 is not allowed"),
    ]
    for kwargs, message in cases:
        args = dict(ways=2, shots=1, queries=1) | kwargs
        with pytest.raises(ValueError, match=message):
            EpisodeSampler(classes, **args)
    with pytest.raises(ValueError, match="classes is empty"):
        EpisodeSampler(classes.subset([]), ways=1)
    with pytest.raises(ValueError, match="batch_size=0 is not allowed"):
        EpisodeSampler(classes, ways=2, shots=1, queries=1).sample_batch(0)


def test_bad_splits(layout):
    classes = load_image_folder(layout)
    with pytest.raises(ValueError, match=r"splits=.*'val'\] would be empty"):
        classes.split({"train": 0.9, "val": 0.01, "test": 0.09})
    with pytest.raises(ValueError, match=r"splits=.* is not allowed: all fractions"):
        classes.split({"train": 0.8, "test": 0.4})
    with pytest.raises(ValueError, match=r"splits=.* sum to at most the 12 classes"):
        classes.split({"train": 10, "test": 3})
    with pytest.raises(ValueError, match=r"splits=.* counts must be >= 1"):
        classes.split({"train": 10, "test": 0})
    with pytest.raises(ValueError, match=r"by='alphabet' is not allowed"):
        classes.split(by="alphabet")


def test_mixed_sizes_and_corrupt_files_name_the_file(tmp_path):
    root = write_layout(tmp_path / "mixed", {"A": 2}, per_class=3)
    odd = root / "A" / "character02" / "odd.png"
    Image.fromarray(np.zeros((7, 9), dtype=np.uint8)).save(odd)
    classes = load_image_folder(root)
    with pytest.raises(ValueError, match=r"mixed sizes .*odd\.png is 7x9.* pass image_size="):
        classes.images(1)
    assert load_image_folder(root, image_size=12).images(1).shape == (4, 1, 12, 12)

    root = write_layout(tmp_path / "corrupt", {"A": 2}, per_class=3)
    (root / "A" / "character01" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot read the image file .*broken\.png"):
        load_image_folder(root).load_all()
    archive = zip_folder(root, tmp_path / "corrupt.zip")
    with pytest.raises(ValueError, match=r"corrupt\.zip:A/character01/broken\.png"):
        load_image_folder(archive).images(0)


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        load_image_folder(tmp_path / "empty")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(flat / "x.png")
    with pytest.raises(ValueError, match="at its top level"):
        load_image_folder(flat)
    with pytest.raises(ValueError, match="mode='CMYK' is not allowed"):
        load_image_folder(flat, mode="CMYK")
    with pytest.raises(ValueError, match=r"tensors\[0\] is torch.float32"):
        ImageClasses.from_tensors([torch.zeros(2, 4, 4)])


# ---------------------------------------------------------------------------------------------
# Embedded data: glyphs and digits


def test_glyphs_are_deterministic_and_lazy():
    a, b = glyph_classes(5000, seed=3), glyph_classes(5000, seed=3)
    assert len(a) == 5000 and a.counts[0] == 20
    assert torch.equal(a.images(4321), b.images(4321))
    assert not torch.equal(a.images(4321), glyph_classes(5000, seed=4).images(4321))
    assert not torch.equal(a.images(1), a.images(2))
    x = a.images(7)
    assert x.dtype == torch.uint8 and x.shape == (20, 1, 28, 28) and x.max() == 255
    assert 0.03 < (x > 127).float().mean() < 0.5  # strokes, not blank or filled


def test_glyph_classes_differ_more_than_instances():
    classes = glyph_classes(40, seed=0)
    x = torch.stack([classes.images(c).float().flatten(1) / 255 for c in range(40)])  # (40, 20, 784)
    within = torch.stack([torch.pdist(x[c]).mean() for c in range(40)]).mean()
    centroids = x.mean(1)
    between = torch.cdist(x[:, 0], x[:, 1])  # instance 0 of class c vs instance 1 of class d
    off_diagonal = between[~torch.eye(40, dtype=torch.bool)].mean()
    assert within < 0.85 * off_diagonal, (within, off_diagonal)
    # nearest-centroid on held-out instances is far above chance (1/40)
    held_out = x[:, -1]
    centroids = x[:, :-1].mean(1)
    accuracy = (torch.cdist(held_out, centroids).argmin(1) == torch.arange(40)).float().mean()
    assert accuracy > 0.5


def test_a_huge_glyph_set_draws_lazily():
    classes = glyph_classes(100000, seed=1)
    assert classes.images(99_999).shape == (20, 1, 28, 28)
    sampler = EpisodeSampler(classes, ways=5, shots=1, queries=5, rotations=True)
    assert sampler.sample_batch(2).support_x.shape == (2, 5, 1, 28, 28)


def test_digits_stand_in():
    digits = digit_classes(image_size=20)
    assert len(digits) == 10 and digits.n_images == 1797
    assert digits.images(3).shape[1:] == (1, 20, 20)
    ep = EpisodeSampler(digits, ways=5, shots=5, queries=10).episode(0)
    assert ep.support_x.shape == (25, 1, 28, 28) and ep.query_x.shape == (50, 1, 28, 28)
