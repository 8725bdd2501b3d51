"""Omniglot loaders and the 20-way one-shot benchmark: synthetic files written here, then the real data."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import metalab.data.omniglot as omniglot
from metalab.data.episodes import EpisodeSampler
from metalab.data.omniglot import (
    PUBLISHED_ONE_SHOT_ERRORS,
    evaluate_one_shot_runs,
    load_omniglot,
    load_one_shot_runs,
    pixel_nearest_neighbour,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("1").save(buf, format="PNG")  # 1-bit, like the real files
    return buf.getvalue()


def drawing(seed: int, size: int = 16) -> np.ndarray:
    """Black strokes (0) on white (255), as in Omniglot."""
    return np.where(np.random.default_rng(seed).random((size, size)) < 0.2, 0, 255).astype(np.uint8)


def write_set(path: Path, alphabets: dict[str, int], drawers: int = 4, seed: int = 0) -> Path:
    """An ``images_*.zip`` in Omniglot's layout (all entries under a folder named like the zip)."""
    stem = path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for alphabet, n in alphabets.items():
            for c in range(1, n + 1):
                for d in range(1, drawers + 1):
                    key = zlib.crc32(f"{alphabet}/{c}/{d}/{seed}".encode())
                    name = f"{stem}/{alphabet}/character{c:02d}/{c:04d}_{d:02d}.png"
                    archive.writestr(name, png_bytes(drawing(key)))
    return path


@pytest.fixture
def small_sets(tmp_path) -> Path:
    folder = tmp_path / "omniglot"
    folder.mkdir()
    write_set(folder / "images_background_small1.zip", {"Greek": 3, "Korean": 2})
    write_set(folder / "images_background_small2.zip", {"Greek": 3, "Tagalog": 4})
    return tmp_path


def test_small_sets_are_merged_and_deduplicated(small_sets, monkeypatch):
    classes = load_omniglot(small_sets)
    assert len(classes) == 9 and classes.n_images == 36
    assert sorted(set(classes.groups)) == ["Greek", "Korean", "Tagalog"]
    assert classes.names[0] == "Greek/character01"
    x = classes.images(0)
    assert x.shape == (4, 1, 16, 16) and x.dtype == torch.uint8
    assert set(torch.unique(x).tolist()) == {0, 255} and (x == 255).float().mean() < 0.5  # inverted: strokes bright
    assert (load_omniglot(small_sets, invert=False).images(0) == 255).float().mean() > 0.5
    monkeypatch.setenv("METALAB_DATA", str(small_sets))
    assert load_omniglot().names == classes.names
    assert len(load_omniglot(sets=["background_small2"])) == 7
    single = load_omniglot(small_sets / "omniglot" / "images_background_small1.zip")
    assert len(single) == 5
    alphabet_split = classes.split({"train": 2, "test": 1}, by="group")
    assert not set(alphabet_split["train"].groups) & set(alphabet_split["test"].groups)


def test_extracted_folders_and_conflicting_duplicates(small_sets, tmp_path):
    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(small_sets / "omniglot" / "images_background_small1.zip") as archive:
        archive.extractall(extracted)
    from_folder = load_omniglot(extracted)  # holds images_background_small1/
    assert len(from_folder) == 5
    assert torch.equal(from_folder.images(3), load_omniglot(small_sets, sets=["background_small1"]).images(3))

    clash = tmp_path / "clash"
    clash.mkdir()
    write_set(clash / "images_background.zip", {"Greek": 2}, seed=1)
    write_set(clash / "images_evaluation.zip", {"Greek": 2}, seed=2)
    with pytest.raises(ValueError, match=r"character 'Greek/character01' is in both .* with different files"):
        load_omniglot(clash)


def test_missing_data_and_bad_sets(tmp_path, monkeypatch):
    monkeypatch.delenv("METALAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"looked in .*/data, .*/\.cache/metalab.*METALAB_DATA.*download=True"):
        load_omniglot()
    with pytest.raises(FileNotFoundError, match=r"no Omniglot image sets found; looked in .*empty"):
        load_omniglot(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"sets=\['training'\] is not allowed"):
        load_omniglot(tmp_path, sets=["training"])
    with pytest.raises(FileNotFoundError, match="all_runs"):
        load_one_shot_runs(tmp_path)


def test_download_is_opt_in_and_uses_the_opener(tmp_path, monkeypatch):
    served = write_set(tmp_path / "served" / "images_background.zip", {"Latin": 2})
    asked = []

    def fake_urlopen(url):
        asked.append(url)
        return open(served, "rb")

    monkeypatch.setattr(omniglot, "_urlopen", fake_urlopen)
    target = tmp_path / "target"
    with pytest.raises(FileNotFoundError):
        load_omniglot(target)  # download defaults to False
    assert asked == []
    classes = load_omniglot(target, sets=["background"], download=True)
    assert asked == [omniglot.URLS["background"]] and len(classes) == 2
    assert (target / "images_background.zip").is_file()
    load_omniglot(target, sets=["background"], download=True)
    assert len(asked) == 1  # already there: not fetched again


def write_runs(path: Path, n_runs: int = 3, n: int = 5) -> Path:
    """An ``all_runs.zip``: test item t is a noisy copy of training class answer[t]."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for r in range(1, n_runs + 1):
            run = f"run{r:02d}"
            answers = rng.permutation(n)
            lines = []
            for c in range(n):
                archive.writestr(f"{run}/training/class{c + 1:02d}.png", png_bytes(drawing(100 * r + c)))
            for t in range(n):
                img = drawing(100 * r + answers[t])
                flip = rng.random(img.shape) < 0.03
                img = np.where(flip, 255 - img, img).astype(np.uint8)
                archive.writestr(f"{run}/test/item{t + 1:02d}.png", png_bytes(img))
                lines.append(f"{run}/test/item{t + 1:02d}.png {run}/training/class{answers[t] + 1:02d}.png")
            archive.writestr(f"{run}/class_labels.txt", "\n".join(lines) + "\n")
    return path


def test_one_shot_runs_and_evaluator_on_synthetic_runs(tmp_path):
    runs = load_one_shot_runs(write_runs(tmp_path / "all_runs.zip"))
    assert [r.name for r in runs] == ["run01", "run02", "run03"]
    run = runs[0]
    assert run.train_images.shape == (5, 1, 16, 16) and run.test_images.shape == (5, 1, 16, 16)
    assert run.train_images.dtype == torch.float32 and run.answers.dtype == torch.int64
    assert sorted(run.answers.tolist()) == [0, 1, 2, 3, 4]
    assert load_one_shot_runs(tmp_path)[1].answers.tolist() == runs[1].answers.tolist()

    perfect = evaluate_one_shot_runs(pixel_nearest_neighbour, runs)
    assert perfect.error_rate == 0.0 and perfect.n_test == 15 and perfect.run_errors.shape == (3,)
    always_zero = evaluate_one_shot_runs(lambda train, test: torch.zeros(len(test), dtype=torch.long), runs)
    assert always_zero.error_rate == pytest.approx(12 / 15)
    assert always_zero.run_errors.tolist() == [0.8, 0.8, 0.8]
    table = always_zero.table("zeros")
    assert list(table.method)[0] == "Bayesian Program Learning" and "zeros" in set(table.method)
    assert always_zero.published == PUBLISHED_ONE_SHOT_ERRORS

    with pytest.raises(ValueError, match=r"predict_fn returned shape \(4,\).* expected 5 integer indices in 0\.\.4"):
        evaluate_one_shot_runs(lambda train, test: torch.zeros(4, dtype=torch.long), runs)
    with pytest.raises(ValueError, match=r"predict_fn returned .* on run01"):
        evaluate_one_shot_runs(lambda train, test: [7] * 5, runs)
    with pytest.raises(ValueError, match=r"predict_fn returned .*float"):
        evaluate_one_shot_runs(lambda train, test: torch.zeros(5), runs)
    with pytest.raises(ValueError, match="runs is empty"):
        evaluate_one_shot_runs(pixel_nearest_neighbour, [])


# ---------------------------------------------------------------------------------------------
# Files that are not to be trusted: every problem is a ValueError naming the file and the problem


def declare_size(path: Path, member: str, size: int) -> Path:
    """Rewrite the uncompressed size ``member`` declares (local header and central directory) to ``size``."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (local := data.find(signature, start)) >= 0:
            name_at = local + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                data[local + offset : local + offset + 4] = size.to_bytes(4, "little")
            start = local + 4
    path.write_bytes(bytes(data))
    return path


BIG = 3 * 2**30  # a 3 GiB member


@pytest.fixture
def guarded_reads(monkeypatch):
    """Fail the test if any zip member is inflated: the limits must act before reading."""
    reads = []
    original = zipfile.ZipFile.read

    def read(self, name, pwd=None):
        reads.append(name)
        return original(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", read)
    return reads


def test_a_member_declaring_gigabytes_is_refused_before_it_is_read(tmp_path, guarded_reads):
    folder = tmp_path / "omniglot"
    zipped = write_set(folder / "images_background.zip", {"Greek": 1}, drawers=2)
    member = "images_background/Greek/character01/0001_01.png"
    declare_size(zipped, member, BIG)
    assert zipped.stat().st_size < 3 * 2**20  # a few kilobytes claiming 3 GiB
    classes = load_omniglot(tmp_path)
    with pytest.raises(ValueError, match=rf"refused to read {zipped}:{member}: it declares {BIG} bytes, more than"):
        classes.images(0)
    assert not guarded_reads

    runs = write_runs(tmp_path / "all_runs.zip", n_runs=1)
    declare_size(runs, "run01/training/class01.png", BIG)
    with pytest.raises(ValueError, match=r"refused to read .*all_runs\.zip: its images and label files declare"):
        load_one_shot_runs(runs)
    assert not guarded_reads


def test_a_member_that_would_inflate_more_than_a_hundredfold_is_refused(tmp_path, guarded_reads):
    bomb = tmp_path / "images_background.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images_background/Greek/character01/0001_01.png", bytes(20 * 2**20))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"0001_01\.png: it would expand from \d+ to 20971520 bytes, more than 100"):
        load_omniglot(bomb).images(0)
    runs = tmp_path / "runs" / "all_runs.zip"
    runs.parent.mkdir()
    with zipfile.ZipFile(runs, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("run01/class_labels.txt", bytes(20 * 2**20))
    with pytest.raises(ValueError, match=r"run01/class_labels\.txt: it would expand"):
        load_one_shot_runs(runs)
    assert not guarded_reads


def valid_zip_bytes(tmp_path: Path) -> bytes:
    return write_set(tmp_path / "valid" / "images_background.zip", {"Greek": 1}).read_bytes()


BROKEN = {
    "empty": (lambda valid: b"", r"it is empty \(0 bytes\)"),
    "truncated": (lambda valid: valid[: len(valid) // 2], r"it is a zip archive cut short or corrupt"),
    "text": (lambda valid: b"alphabet,character\nGreek,1\n", r"it is not a zip archive \(it begins with b'alph'\)"),
    "gzip": (lambda valid: __import__("gzip").compress(valid), r"it is not a zip archive \(it begins with b'\\x1f"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("filename", ["images_background.zip", "all_runs.zip"])
def test_an_empty_truncated_or_wrong_format_zip_is_named_with_its_problem(tmp_path, kind, filename):
    make, problem = BROKEN[kind]
    broken = tmp_path / filename
    broken.write_bytes(make(valid_zip_bytes(tmp_path)))
    load = load_one_shot_runs if filename == "all_runs.zip" else load_omniglot
    with pytest.raises(ValueError, match=rf"cannot read the zip file {broken}: {problem}"):
        load(broken)


def test_a_damaged_member_or_image_is_named_with_its_problem(tmp_path):
    zipped = write_set(tmp_path / "images_background.zip", {"Greek": 1}, drawers=2)
    member = "images_background/Greek/character01/0001_01.png"
    with zipfile.ZipFile(zipped) as archive:
        info = archive.getinfo(member)
    data = bytearray(zipped.read_bytes())
    start = info.header_offset + 30 + len(member)
    data[start + 20 : start + 28] = bytes(8)  # damage the stored bytes: the CRC no longer matches
    zipped.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"cannot read {zipped}:{member}: the member is damaged \(BadZipFile"):
        load_omniglot(zipped).images(0)

    folder = tmp_path / "folder" / "Greek" / "character01"
    folder.mkdir(parents=True)
    (folder / "0001_01.png").write_bytes(b"")
    (folder / "0001_02.png").write_bytes(b"GIF89a not really")
    with pytest.raises(ValueError, match=r"0001_01\.png: it is empty \(0 bytes\)"):
        load_omniglot(tmp_path / "folder").images(0)
    (folder / "0001_01.png").unlink()
    with pytest.raises(ValueError, match=r"0001_02\.png: .*(not in an image format|truncated|cannot identify)"):
        load_omniglot(tmp_path / "folder").images(0)


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        (b"\xff\xfe run01/test/item01.png", r"it is not UTF-8 text"),
        (b"run01/test/item01.png run01/training/class01.png extra\n", r"line 1 holds 3 fields"),
    ],
)
def test_a_malformed_class_labels_file_is_named_with_its_problem(tmp_path, labels, problem):
    good = write_runs(tmp_path / "all_runs.zip", n_runs=1)
    bad = tmp_path / "bad" / "all_runs.zip"
    bad.parent.mkdir()
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bad, "w") as target:
        for info in source.infolist():
            target.writestr(info, labels if info.filename.endswith("class_labels.txt") else source.read(info))
    with pytest.raises(ValueError, match=rf"cannot read {bad}:run01/class_labels\.txt: {problem}"):
        load_one_shot_runs(bad)


# ---------------------------------------------------------------------------------------------
# Real data (../shared/data/omniglot)


@pytest.fixture(scope="module")
def real_omniglot() -> Path:
    folder = SHARED_DATA / "omniglot"
    if not (folder / "images_background_small1.zip").is_file():
        reason = f"real Omniglot not found at {folder} (see shared/data/README.md)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.mark.realdata
def test_real_small_sets(real_omniglot):
    classes = load_omniglot(real_omniglot).load_all()
    # The shared README says 212 characters / 4240 images, but the files hold 8 alphabets whose
    # characters number 24+22+24+40+26 (small1) + 47+42+17 (small2, less the shared Greek and Latin)
    # = 242, with 20 drawings each = 4840 distinct images (checked by CRC: none repeats).
    assert len(set(classes.groups)) == 8
    assert len(classes) == 242 and classes.n_images == 4840
    assert set(classes.counts) == {20}
    assert classes.images(0).shape == (20, 1, 105, 105)
    ep = EpisodeSampler(classes, ways=5, shots=1, queries=15, rotations=True).episode(0)
    assert ep.support_x.shape == (5, 1, 28, 28) and ep.query_x.shape == (75, 1, 28, 28)
    assert torch.equal(ep.support_y, torch.arange(5))


@pytest.mark.realdata
def test_real_one_shot_runs(real_omniglot):
    runs = load_one_shot_runs(real_omniglot)
    assert len(runs) == 20
    assert all(r.train_images.shape == (20, 1, 105, 105) and r.test_images.shape == (20, 1, 105, 105) for r in runs)
    assert all(sorted(r.answers.tolist()) == list(range(20)) for r in runs)
    result = evaluate_one_shot_runs(pixel_nearest_neighbour, runs)
    assert result.n_test == 400
    # nearest neighbour in raw pixels: far worse than people (4.5%), far better than chance (95%)
    assert 0.6 < result.error_rate < 0.9, result.error_rate


def test_meta_training_episodes_rotate_omniglot_training_classes_and_leave_test_classes_alone(small_sets):
    """The papers' augmentation, on by default: each training character at 0/90/180/270 degrees is its own
    class (4x the classes, every image a quarter turn of a drawing of its character); test classes are not."""
    from metalab.experiments.memory_reduced import MemoryReducedConfig
    from metalab.experiments.memory_reduced.context import load_data, sampler, training_sampler

    config = MemoryReducedConfig(
        dataset="omniglot", data_path=str(small_sets), ways=2, shots=(1,), queries=3, image_size=16
    )
    data = load_data(config)
    training = training_sampler(config, data, 1)
    assert training.n_classes == 4 * len(data.train)
    assert training_sampler(config.replace(rotations=False), data, 1).n_classes == len(data.train)
    assert sampler(config, data.test, 1, "test:1").n_classes == len(data.test)
    seen = set()
    for index in range(12):
        episode = training.episode(index)
        for label, c in enumerate(episode.classes.tolist()):
            base, quarter = divmod(c, 4)
            drawings = training.class_images(base).float() / 255
            turned = torch.rot90(drawings, k=quarter, dims=(-2, -1))
            image = episode.support_x[label]
            assert any(torch.equal(image, t) for t in turned), (c, quarter)
            assert quarter == 0 or not any(torch.equal(image, d) for d in drawings)
            seen.add(quarter)
    assert seen == {0, 1, 2, 3}
