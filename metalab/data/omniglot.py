"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015): image sets and the 20-way one-shot benchmark.

Files, as the authors publish them (``brendenlake/omniglot``, folder ``python/``):

* ``images_background.zip`` (30 alphabets, 964 characters) and ``images_evaluation.zip``
  (20 alphabets, 659 characters): the full release, 20 drawings of each character;
* ``images_background_small1.zip`` / ``images_background_small2.zip``: two small subsets of the
  background set (5 alphabets each; Greek and Latin appear in both, byte for byte);
* ``one-shot-classification/all_runs.zip``: the 20 runs of the 20-way one-shot benchmark.

Each image set is ``ALPHABET/characterNN/XXXX_YY.png``, 105x105 black strokes on white. The loaders
read the zips in place (or their extracted folders) and, by default, invert the pixels so that
strokes are bright on a black background (zero padding then means "no ink"). Classes are
``"Alphabet/characterNN"`` with the alphabet as group, so ``ImageClasses.split(..., by="group")``
gives alphabet-disjoint splits. A character found in two sets with identical files is kept once;
with differing files it is an error.

No file is trusted: zips and their members are read through :mod:`metalab.data.image_stores`, which
checks each member's declared size and compression ratio before inflating it; an empty, truncated,
corrupt or wrong-format zip, image or ``class_labels.txt`` raises a ValueError naming the file (and
the member) and the problem.

:func:`evaluate_one_shot_runs` scores any predictor on the benchmark next to the published error
rates in :data:`PUBLISHED_ONE_SHOT_ERRORS`.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from metalab.data.image_folders import (
    ClassEntry,
    ImageClasses,
    check_size,
    classes_from_entries,
    looked_in,
    scan_image_source,
)
from metalab.data.image_stores import decode_image, open_zip, read_file, read_member
from metalab.data.locations import candidate_dirs

SUBDIRS = ("omniglot", "Omniglot")
BASE_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
SET_FILES = {
    "background": "images_background",
    "evaluation": "images_evaluation",
    "background_small1": "images_background_small1",
    "background_small2": "images_background_small2",
}
RUNS_FILE = "all_runs"
URLS = {
    **{name: f"{BASE_URL}/{stem}.zip" for name, stem in SET_FILES.items()},
    "runs": f"{BASE_URL}/one-shot-classification/{RUNS_FILE}.zip",
}

#: the most bytes the one-shot runs' images and label files may declare together (the real ones: about 2 MB)
MAX_RUNS_BYTES = 256 * 2**20

# Error rates on the 20 runs, as fractions. People, BPL and the range for deep networks are from
# Lake et al. (2015); the two network entries are the values that paper reports for them.
PUBLISHED_ONE_SHOT_ERRORS = {
    "people": 0.045,
    "Bayesian Program Learning": 0.033,
    "Siamese convnet (Koch et al. 2015)": 0.080,
    "deep convnet": 0.135,
}


# ---------------------------------------------------------------------------------------------
# Image sets


def find_omniglot_dir(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The folder holding Omniglot's zips or extracted folders: ``path``, else the search path of
    :mod:`metalab.data.locations` (``$METALAB_DATA``, ``./data``, ``~/.cache/metalab``), or their ``omniglot/``."""
    for d in candidate_dirs(path, SUBDIRS):
        if d.is_dir() and any(_set_source(d, stem) for stem in [*SET_FILES.values(), RUNS_FILE]):
            return d
    return None


def _set_source(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    for candidate in (folder / f"{stem}.zip", folder / stem):
        if candidate.exists():
            return candidate
    return None


def load_omniglot(path: str | os.PathLike | None = None, *, sets: Sequence[str] | None = None,
                  image_size: Any = None, invert: bool = True, download: bool = False) -> ImageClasses:  # fmt: skip
    """Omniglot's characters as classes of 20 drawings (decoded lazily, once).

    Parameters
    ----------
    path : str or PathLike, optional
        A folder holding the zips or their extracted folders (default ``$METALAB_DATA``, also looked
        for in its ``omniglot/``), or one zip / extracted set itself.
    sets : sequence of str, optional
        From ``background``, ``evaluation``, ``background_small1``, ``background_small2``; by default
        the full sets that are present, else the small ones.
    image_size : int or (int, int), optional
        Resizes as images are read (e.g. 28 to keep memory small; the sampler resizes anyway).
    invert : bool
        Bright strokes on black.
    download : bool
        First fetch the missing ``sets`` (default: the full ones) from the authors' repository over
        the network; it never happens unless asked.

    Returns
    -------
    ImageClasses
        One class per character, grouped by alphabet.
    """
    check_size("image_size", image_size)
    if sets is not None:
        sets = [sets] if isinstance(sets, str) else list(sets)
        unknown = [s for s in sets if s not in SET_FILES]
        if unknown or not sets or len(set(sets)) != len(sets):
            raise ValueError(f"sets={sets!r} is not allowed: distinct names from {list(SET_FILES)}")
    direct = pathlib.Path(path).expanduser() if path is not None else None
    if direct is not None and direct.exists() and _is_single_set(direct):
        sources = [direct]
    else:
        if download:
            root = _download_root(path)
            download_omniglot(root, sets if sets is not None else ["background", "evaluation"])
        folder = find_omniglot_dir(path)
        if folder is None:
            raise FileNotFoundError(_missing_message("Omniglot image sets", path))
        if sets is None:
            full = [s for s in ("background", "evaluation") if _set_source(folder, SET_FILES[s])]
            sets = full or [s for s in ("background_small1", "background_small2") if _set_source(folder, SET_FILES[s])]
        missing = [s for s in sets if _set_source(folder, SET_FILES[s]) is None]
        if missing or not sets:
            raise FileNotFoundError(
                f"Omniglot set(s) {missing or list(SET_FILES)} not found in {folder} (looked for "
                f"{', '.join(SET_FILES[s] + '.zip' for s in (missing or SET_FILES))} or extracted folders); "
                "pass sets= naming those present, or download=True"
            )
        sources = [_set_source(folder, SET_FILES[s]) for s in sets]
    entries = _merge([scan_image_source(src, (".png",)) for src in sources], sources)
    return classes_from_entries(
        entries, mode="L", image_size=image_size, invert=invert, description=", ".join(map(str, sources))
    )


def _is_single_set(p: pathlib.Path) -> bool:
    """A zip file, or a folder that holds alphabet folders rather than the set files."""
    if p.is_file():
        return True
    return not any(_set_source(p, stem) for stem in [*SET_FILES.values(), RUNS_FILE]) and not any(
        (p / s).is_dir() for s in SUBDIRS
    )


def _merge(scans: list[list[ClassEntry]], sources: list[pathlib.Path]) -> list[ClassEntry]:
    """Union of the classes of several sets; a class present twice with identical files is kept once."""
    kept: dict[str, tuple[ClassEntry, pathlib.Path]] = {}
    for entries, source in zip(scans, sources, strict=True):
        for e in entries:
            if e.name not in kept:
                kept[e.name] = (e, source)
                continue
            first, first_source = kept[e.name]
            if _fingerprint(first) != _fingerprint(e):
                raise ValueError(
                    f"character {e.name!r} is in both {first_source} and {source} with different files; "
                    "load the sets separately (sets=[...]) or remove one copy"
                )
    return [kept[name][0] for name in sorted(kept)]


def _fingerprint(entry: ClassEntry) -> list[tuple[str, int]]:
    out = []
    for ref in entry.files:
        crc = ref.crc if ref.crc is not None else zlib.crc32(read_file(ref.container / ref.member))
        out.append((ref.member.rpartition("/")[2], crc))
    return out


def _missing_message(what: str, path: Any) -> str:
    looked = looked_in(candidate_dirs(path, SUBDIRS))
    return (
        f"no {what} found; looked in {looked}. Download Omniglot from github.com/brendenlake/omniglot "
        "(python/*.zip) and pass the folder as `path` or set METALAB_DATA to it (or to a parent holding "
        "omniglot/), or pass download=True. The notebooks and dashboard fall back to generated glyphs "
        "(metalab.data.glyphs)."
    )


def _download_root(path: Any) -> pathlib.Path:
    root = path if path is not None else os.environ.get("METALAB_DATA")
    if not root:
        raise ValueError("download=True needs a destination: pass path= or set METALAB_DATA")
    return pathlib.Path(root).expanduser()


def _urlopen(url: str):  # indirection so tests can serve files without a network
    return urllib.request.urlopen(url, timeout=60)


def download_omniglot(
    root: str | os.PathLike, items: Sequence[str] = ("background", "evaluation", "runs")
) -> list[pathlib.Path]:
    """Fetch the named files into ``root`` unless already there.

    Uses the network (the authors' GitHub repository); nothing else in this module does.

    Parameters
    ----------
    root : str or PathLike
        The folder to write to (created if missing).
    items : sequence of str
        Keys of :data:`URLS`.

    Returns
    -------
    list of Path
        The files' paths, in the order of ``items``.
    """
    unknown = [i for i in items if i not in URLS]
    if unknown:
        raise ValueError(f"items={list(items)!r} is not allowed: names from {list(URLS)}")
    root = pathlib.Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for item in items:
        target = root / URLS[item].rpartition("/")[2]
        if not target.exists() and _set_source(root, target.stem) is None:
            with _urlopen(URLS[item]) as response, tempfile.NamedTemporaryFile(dir=root, delete=False) as tmp:
                shutil.copyfileobj(response, tmp)
            if not zipfile.is_zipfile(tmp.name):
                os.unlink(tmp.name)
                raise ValueError(f"the download from {URLS[item]} is not a zip file")
            os.replace(tmp.name, target)
        out.append(target)
    return out


# ---------------------------------------------------------------------------------------------
# The 20-way one-shot benchmark


@dataclass(frozen=True)
class OneShotRun:
    """One run: 20 training images (one per class), test images, and the right training index per test image.

    Images are float32 ``(n, 1, H, W)`` in ``[0, 1]`` (strokes 1 with ``invert=True``);
    ``answers[t]`` is the position in ``train_images`` of test image ``t``'s class.
    """

    name: str
    train_images: torch.Tensor
    test_images: torch.Tensor
    answers: torch.Tensor
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]


def find_one_shot_runs(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """``all_runs.zip`` or its extracted folder: ``path`` itself, or inside ``path`` / ``$METALAB_DATA`` (or their ``omniglot/``)."""
    if path is not None:
        p = pathlib.Path(path).expanduser()
        if p.is_file() or (p.is_dir() and any(p.glob("run*/class_labels.txt"))):
            return p
    for d in candidate_dirs(path, SUBDIRS):
        if d.is_dir() and (src := _set_source(d, RUNS_FILE)) is not None:
            return src
    return None


def load_one_shot_runs(path: str | os.PathLike | None = None, *, image_size: Any = None,
                       invert: bool = True) -> list[OneShotRun]:  # fmt: skip
    """The benchmark's runs, in order (``run01`` .. ``run20``), from ``all_runs.zip`` or its folder.

    Parameters
    ----------
    path : str or PathLike, optional
        ``all_runs.zip``, its extracted folder, or a folder holding either (default ``$METALAB_DATA``).
    image_size : int or (int, int), optional
        Resizes the images as they are read.
    invert : bool
        Bright strokes on black.

    Returns
    -------
    list of OneShotRun
        The runs by name.
    """
    size = check_size("image_size", image_size)
    source = find_one_shot_runs(path)
    if source is None:
        raise FileNotFoundError(_missing_message("Omniglot one-shot runs (all_runs.zip)", path))
    # the runs may sit under a top folder; key every file by its path from the run folder on
    runs: dict[str, dict[str, bytes]] = {}
    for name, data in _run_files(source).items():
        parts = name.split("/")
        for k, part in enumerate(parts[:-1]):
            if part.startswith("run"):
                runs.setdefault(part, {})["/".join(parts[k:])] = data
                break
    runs = {r: f for r, f in runs.items() if f"{r}/class_labels.txt" in f}
    if not runs:
        raise ValueError(f"{source} holds no run folders with a class_labels.txt")
    return [_read_run(name, runs[name], source, size, invert) for name in sorted(runs)]


def _run_files(source: pathlib.Path) -> dict[str, bytes]:
    """The ``.png`` and ``.txt`` files of the runs' zip or folder by path, each held to the size limits of
    :mod:`metalab.data.image_stores` and together to :data:`MAX_RUNS_BYTES`."""
    wanted = (".png", ".txt")
    if source.is_file():
        with open_zip(source) as archive:
            members = [i for i in archive.infolist() if not i.is_dir() and i.filename.endswith(wanted)]
            _check_total(source, sum(i.file_size for i in members))
            return {i.filename: read_member(archive, i, source) for i in members}
    paths = [p for p in source.rglob("*") if p.is_file() and p.name.endswith(wanted)]
    _check_total(source, sum(p.stat().st_size for p in paths))
    return {p.relative_to(source).as_posix(): read_file(p) for p in paths}


def _check_total(source: pathlib.Path, total: int) -> None:
    if total > MAX_RUNS_BYTES:
        raise ValueError(
            f"refused to read {source}: its images and label files declare {total} bytes together, more than the "
            f"{MAX_RUNS_BYTES} bytes allowed (the benchmark's 20 runs hold about 2 MB)"
        )


def _answers(name: str, text: bytes, where: str) -> dict[str, str]:
    """``class_labels.txt``: one ``test/itemNN.png training/classNN.png`` pair per line."""
    try:
        lines = text.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"cannot read {where}: it is not UTF-8 text ({err})") from None
    answer_of: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(
                f"cannot read {where}: line {number} holds {len(fields)} fields ({line.strip()[:80]!r}); expected "
                "two paths, a test image and its training image"
            )
        answer_of[_from_run(fields[0], name)] = _from_run(fields[1], name)
    return answer_of


def _read_run(name: str, files: dict[str, bytes], source: pathlib.Path, size, invert: bool) -> OneShotRun:
    train = sorted(f for f in files if f.startswith(f"{name}/training/") and f.endswith(".png"))
    test = sorted(f for f in files if f.startswith(f"{name}/test/") and f.endswith(".png"))
    where = f"{source}:{name}/class_labels.txt"
    answer_of = _answers(name, files[f"{name}/class_labels.txt"], where)
    missing = [t for t in test if t not in answer_of]
    unknown = sorted(set(answer_of.values()) - set(train))
    if not train or not test or missing or unknown:
        raise ValueError(
            f"{where} does not match the run's images ({len(train)} training, {len(test)} test): "
            f"test images without an answer {missing[:3]}, answers naming unknown training images {unknown[:3]}"
        )
    position = {f: i for i, f in enumerate(train)}

    def read(names: list[str]) -> torch.Tensor:
        arrays = [decode_image(files[f], f"{source}:{f}", "L", size, invert) for f in names]
        return torch.from_numpy(np.stack(arrays)).float().div_(255.0)

    return OneShotRun(
        name=name,
        train_images=read(train),
        test_images=read(test),
        answers=torch.tensor([position[answer_of[t]] for t in test], dtype=torch.int64),
        train_files=tuple(train),
        test_files=tuple(test),
    )


def _from_run(path: str, run: str) -> str:
    parts = path.strip().split("/")
    return "/".join(parts[parts.index(run) :]) if run in parts else path.strip()


@dataclass(frozen=True)
class OneShotResult:
    """Error rates (fractions) of a predictor: per run, overall, and the published ones beside it."""

    run_names: tuple[str, ...]
    run_errors: torch.Tensor
    error_rate: float
    n_errors: int
    n_test: int
    published: dict[str, float] = field(default_factory=lambda: dict(PUBLISHED_ONE_SHOT_ERRORS))

    def table(self, name: str = "this predictor") -> pd.DataFrame:
        """One row per method (this one and the published), columns ``method`` and ``error_rate``, best first."""
        rows = [(name, self.error_rate), *self.published.items()]
        return pd.DataFrame(rows, columns=["method", "error_rate"]).sort_values("error_rate", ignore_index=True)


def evaluate_one_shot_runs(predict_fn: Callable[[torch.Tensor, torch.Tensor], Any],
                           runs: Sequence[OneShotRun] | None = None) -> OneShotResult:  # fmt: skip
    """Score a one-shot predictor on every run.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(train_images, test_images)`` -> the index of a training image per test image.
    runs : sequence of OneShotRun, optional
        Default :func:`load_one_shot_runs` (``$METALAB_DATA``).

    Returns
    -------
    OneShotResult
        Per-run and overall error rates; the overall rate pools all test images (with 20 per run it
        equals the mean of the per-run rates).
    """
    if runs is None:
        runs = load_one_shot_runs()
    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty: pass the runs of load_one_shot_runs()")
    errors, n_errors, n_test = [], 0, 0
    for run in runs:
        raw = predict_fn(run.train_images, run.test_images)
        try:
            pred = torch.as_tensor(np.asarray(raw.detach().cpu() if isinstance(raw, torch.Tensor) else raw))
        except (TypeError, ValueError):
            pred = None
        n_train, n_run = len(run.train_images), len(run.test_images)
        ok = pred is not None and pred.shape == (n_run,) and not pred.is_floating_point() and not pred.is_complex()
        ok = ok and bool(((pred >= 0) & (pred < n_train)).all())
        if not ok:
            shown = f"shape {tuple(pred.shape)} dtype {pred.dtype}" if pred is not None else type(raw).__name__
            raise ValueError(
                f"predict_fn returned {shown} on {run.name}: expected {n_run} integer indices in 0..{n_train - 1}, "
                "one training image per test image"
            )
        wrong = int((pred.to(torch.int64) != run.answers).sum())
        errors.append(wrong / n_run)
        n_errors += wrong
        n_test += n_run
    return OneShotResult(
        run_names=tuple(r.name for r in runs),
        run_errors=torch.tensor(errors, dtype=torch.float64),
        error_rate=n_errors / n_test,
        n_errors=n_errors,
        n_test=n_test,
    )


def pixel_nearest_neighbour(train_images: torch.Tensor, test_images: torch.Tensor) -> torch.Tensor:
    """A baseline predictor: the training image nearest in Euclidean pixel distance to each test image."""
    a = train_images.reshape(len(train_images), -1).to(torch.float64)
    b = test_images.reshape(len(test_images), -1).to(torch.float64)
    return torch.cdist(b, a).argmin(dim=1)
