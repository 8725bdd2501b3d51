"""Binary classification between two digits, with the labels assigned at random per task.

The task pool of the sparse-recovery paper's classification experiment: a task picks two different
digits and labels one 0 and the other 1 in a random order, so no fixed read-out can score above
chance before adapting.  Each task holds ``shots`` support and ``query_shots`` query images per class
(balanced), shuffled within the task.

Images come from scikit-learn's ``load_digits`` by default (1797 images, 8x8, values scaled to [0, 1]),
or from MNIST files a user downloaded (:func:`load_mnist`): the four IDX files (``.gz`` or not), or
an ``.npz`` with ``x_train``/``y_train``/``x_test``/``y_test``.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metalab.core.checks import check_choice, check_int, check_seed
from metalab.core.seeding import generator as seeded_generator
from metalab.data.episodes import EpisodeBatch

SPLITS = ("train", "test")
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


# ---------------------------------------------------------------------------------------------
# MNIST files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An array from an IDX file (the MNIST format), gzip-compressed or not."""
    path = Path(path)
    with path.open("rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ValueError(
            f"{path} is not an IDX file: expected two zero bytes, a type code and the number of dimensions"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header announces {ndim} dimensions")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path} holds {len(raw) - header} data bytes; its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx(folder: Path, split: str, kind: str) -> Path:
    stem = _IDX_PREFIX[split]
    dims = "idx3" if kind == "images" else "idx1"
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = folder / f"{stem}-{kind}{sep}{dims}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no {stem}-{kind}-{dims}-ubyte[.gz] in {folder}")


def load_mnist(path: str | os.PathLike | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of MNIST's ``split`` ("train" | "test").

    ``path``: a folder with the IDX files (or with ``mnist.npz``), or an ``.npz`` file; None reads
    ``$METALAB_DATA/mnist``.
    """
    check_choice("split", split, SPLITS)
    if path is None:
        root = os.environ.get("METALAB_DATA")
        if not root:
            raise FileNotFoundError(
                "path=None needs the METALAB_DATA environment variable (its mnist/ folder); or pass path"
            )
        path = Path(root) / "mnist"
    path = Path(path)
    if path.is_dir() and (path / "mnist.npz").is_file():
        path = path / "mnist.npz"
    if path.is_file() and path.suffix == ".npz":
        with np.load(path) as data:
            keys = (f"x_{split}", f"y_{split}")
            if not all(k in data for k in keys):
                raise ValueError(f"{path} lacks {keys}: an MNIST .npz holds x_train, y_train, x_test, y_test")
            images, labels = data[keys[0]], data[keys[1]]
    elif path.is_dir():
        images, labels = read_idx(_find_idx(path, split, "images")), read_idx(_find_idx(path, split, "labels"))
    else:
        raise FileNotFoundError(
            f"path={str(path)!r} is not allowed: an MNIST folder (IDX files or mnist.npz) or an .npz file"
        )
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST images {images.shape} and labels {labels.shape} disagree: expected (N, H, W) and (N,)")
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Tasks


class DigitPairs:
    """A pool of digit-pair tasks over ``images`` (N, H, W) or (N, d) with integer ``labels`` (N,).

    ``flatten=True`` gives tasks of vectors (N, H·W); else images (1, H, W) for convolutional nets.
    """

    def __init__(self, images: Any, labels: Any, *, flatten: bool = True, scale: float = 1.0):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim not in (2, 3) or labels.ndim != 1 or images.shape[0] != labels.shape[0] or labels.size == 0:
            raise ValueError(
                f"images {images.shape} and labels {labels.shape} are not allowed: (N, H, W) or (N, d), and (N,)"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels of dtype {labels.dtype} are not allowed: integer class labels")
        x = torch.as_tensor(images.astype(np.float32) * np.float32(scale))
        if not bool(torch.isfinite(x).all()):
            raise ValueError("images contain non-finite values (NaN or inf)")
        self.x = x.flatten(1) if flatten else (x.unsqueeze(1) if x.ndim == 3 else x)
        self.labels = torch.as_tensor(labels.astype(np.int64))
        self.digits = tuple(int(d) for d in torch.unique(self.labels))
        self._index = {d: torch.nonzero(self.labels == d).flatten() for d in self.digits}

    @classmethod
    def from_sklearn(cls, *, flatten: bool = True) -> DigitPairs:
        """scikit-learn's 8x8 digits, values in [0, 1] (the embedded default; no download)."""
        from sklearn.datasets import load_digits

        data = load_digits()
        return cls(data.images, data.target, flatten=flatten, scale=1.0 / 16.0)

    @classmethod
    def from_mnist(
        cls, path: str | os.PathLike | None = None, split: str = "train", *, flatten: bool = True
    ) -> DigitPairs:
        """MNIST from files (see :func:`load_mnist`), values in [0, 1]."""
        images, labels = load_mnist(path, split)
        return cls(images, labels, flatten=flatten, scale=1.0 / 255.0)

    def class_size(self, digit: int) -> int:
        return int(self._index[digit].numel())

    def _check_pair(self, pair: Any) -> tuple[int, int]:
        ok = isinstance(pair, (tuple, list, np.ndarray, torch.Tensor)) and len(pair) == 2
        values = tuple(int(v) for v in pair) if ok else ()
        if not ok or values[0] == values[1]:
            raise ValueError(f"pair={pair!r} is not allowed: two different digits")
        if any(v not in self._index for v in values):
            raise ValueError(f"pair={pair!r} is not allowed: digits among {self.digits} (those present in the data)")
        return values

    def sample(
        self,
        n_tasks: int,
        shots: int,
        query_shots: int | None = None,
        *,
        pairs: Sequence[Sequence[int]] | None = None,
        permute_labels: bool = True,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> EpisodeBatch:
        """Draw ``n_tasks`` digit-pair tasks, balanced and shuffled within each task.

        Parameters
        ----------
        n_tasks : int
            B, the number of tasks.
        shots, query_shots : int
            Support and query images per class (``query_shots`` defaults to ``shots``).
        pairs : optional
            None draws two different digits per task; else one pair for every task or a list of
            ``n_tasks`` pairs.
        permute_labels : bool
            Decide per task at random which digit is labelled 0 (with ``pairs=None`` the random order of
            the draw already does).
        generator, seed
            The random stream, or a fresh one seeded with ``seed`` (default 0).

        Returns
        -------
        EpisodeBatch
            x (B, 2·shots, *image), y (B, 2·shots) in {0, 1} (and the query set likewise), and
            ``classes`` (B, 2) with ``classes[t, c]`` the digit labelled c in task t.
        """
        n_tasks = check_int("n_tasks", n_tasks, 1)
        shots = check_int("shots", shots, 1)
        query_shots = shots if query_shots is None else check_int("query_shots", query_shots, 1)
        if generator is None:
            generator = seeded_generator(check_seed(0 if seed is None else seed), "digit-pairs")
        if pairs is None:
            if len(self.digits) < 2:
                raise ValueError(f"the data hold only the digits {self.digits}; two are needed")
            picks = torch.argsort(torch.rand(n_tasks, len(self.digits), generator=generator), dim=1)[:, :2]
            chosen = torch.tensor(self.digits)[picks]
        else:
            is_single = len(pairs) == 2 and all(np.isscalar(v) or getattr(v, "ndim", 1) == 0 for v in pairs)
            listed = [pairs] * n_tasks if is_single else list(pairs)
            if len(listed) != n_tasks:
                raise ValueError(f"pairs has {len(listed)} entries; expected one pair or n_tasks={n_tasks} pairs")
            chosen = torch.tensor([self._check_pair(p) for p in listed])
            if permute_labels:
                flip = torch.rand(n_tasks, generator=generator) < 0.5
                chosen = torch.where(flip[:, None], chosen.flip(1), chosen)
        need = shots + query_shots
        for d in torch.unique(chosen).tolist():
            if self.class_size(d) < need:
                raise ValueError(
                    f"shots={shots} is not allowed with query_shots={query_shots}: shots + query_shots <= "
                    f"{self.class_size(d)} (the images of digit {d})"
                )
        support, query = [], []
        for t in range(n_tasks):  # data preparation, outside any training step
            rows = [
                self._index[int(d)][torch.randperm(self.class_size(int(d)), generator=generator)[:need]]
                for d in chosen[t]
            ]
            support.append(self._shuffled(rows, slice(0, shots), generator))
            query.append(self._shuffled(rows, slice(shots, need), generator))
        sx, sy = (torch.stack(v) for v in zip(*support, strict=True))
        qx, qy = (torch.stack(v) for v in zip(*query, strict=True))
        return EpisodeBatch(sx, sy, qx, qy, chosen)

    def _shuffled(self, rows: list[torch.Tensor], part: slice, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.cat([r[part] for r in rows])
        y = torch.cat([torch.full((r[part].numel(),), c, dtype=torch.long) for c, r in enumerate(rows)])
        order = torch.randperm(idx.numel(), generator=g)
        return self.x[idx[order]], y[order]


# ---------------------------------------------------------------------------------------------
# Disjoint meta-training and test images


@functools.lru_cache(maxsize=4)
def split_digits(train_fraction: float = 0.5) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8x8 digits split per class into meta-training and test images, deterministically.

    Parameters
    ----------
    train_fraction : float
        The share of each digit's images, in the data set's order, that go to meta-training
        (``round(fraction · count)`` of them); the rest are the test images.

    Returns
    -------
    ((train images (N₁, 8, 8), train labels (N₁,)), (test images (N₂, 8, 8), test labels (N₂,)))
        Raw pixel values 0..16; no image is in both.  Cached: treat the arrays as read-only.
    """
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction={train_fraction!r} is not allowed: a number strictly between 0 and 1")
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.images, data.target
    train, test = [], []
    for digit in range(10):
        index = np.flatnonzero(labels == digit)
        cut = int(round(train_fraction * index.size))
        train.append(index[:cut])
        test.append(index[cut:])
    train_index, test_index = np.concatenate(train), np.concatenate(test)
    return (images[train_index], labels[train_index]), (images[test_index], labels[test_index])


def digit_split_sizes(train_fraction: float = 0.5) -> dict[int, int]:
    """Per digit, the images it has in the smaller of the two halves of :func:`split_digits` (what one
    task may draw at most: support + query images per class)."""
    (_, train_labels), (_, test_labels) = split_digits(train_fraction)
    return {d: int(min((train_labels == d).sum(), (test_labels == d).sum())) for d in range(10)}


def digit_pair_pools(digits: Sequence[int], train_fraction: float = 0.5) -> tuple[DigitPairs, DigitPairs]:
    """(meta-training pool, test pool) of digit-pair tasks over ``digits``, from the disjoint images of
    :func:`split_digits` (flattened, values in [0, 1])."""
    pools = []
    for images, labels in split_digits(train_fraction):
        keep = np.isin(labels, list(digits))
        pools.append(DigitPairs(images[keep], labels[keep], flatten=True, scale=1.0 / 16.0))
    return pools[0], pools[1]
