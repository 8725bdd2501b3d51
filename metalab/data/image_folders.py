"""Labelled images grouped by class, read lazily from folders, zip files or arrays.

:class:`ImageClasses` is the one input of the episode sampler (:mod:`metalab.data.episodes`). It
holds class names, an optional group per class (an Omniglot alphabet, a tieredImageNet
super-category) and a *store* (:mod:`metalab.data.image_stores`) that produces the images of one
class as a ``uint8`` tensor ``(n, C, H, W)``. A store decodes a class the first time it is asked
for it and keeps the tensor, so every image is decoded once; subsets made by
:meth:`ImageClasses.subset` and :meth:`ImageClasses.split` share their parent's store and its cache.

Folder layout (:func:`load_image_folder`): every directory that directly holds image files is a
class, named by its path relative to the root (``Greek/character01``), and its group is the path
of its parent (``Greek``; ``""`` for a flat ``class/image`` layout). A zip file is read in place,
without extracting; when all its entries sit under a folder named like the zip itself
(``images_background.zip`` holding ``images_background/...``) that folder is dropped from the names.
"""

from __future__ import annotations

import math
import numbers
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metalab.core.checks import check_choice
from metalab.core.seeding import generator
from metalab.data.image_stores import ArrayStore, ClassStore, FileRef, FileStore, TensorStore, open_zip

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MODES = ("L", "RGB")
DEFAULT_SPLITS = {"train": 0.7, "val": 0.1, "test": 0.2}

# ---------------------------------------------------------------------------------------------
# Argument checks shared by the image modules


def check_size(name: str, value: Any, allow_none: bool = True) -> tuple[int, int] | None:
    """``None`` (when allowed), an int ``s`` meaning ``(s, s)``, or a pair ``(height, width)`` of positive ints."""
    if value is None and allow_none:
        return None
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    ok = isinstance(pair, Sequence) and len(pair) == 2
    ok = ok and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in pair)
    if not ok:
        none = "None (keep the stored size), " if allow_none else ""
        raise ValueError(f"{name}={value!r} is not allowed: {none}a positive int or a (height, width) pair of them")
    return int(pair[0]), int(pair[1])


# ---------------------------------------------------------------------------------------------
# ImageClasses


class ImageClasses:
    """Classes of images: ``names[i]``, ``groups[i]`` and ``images(i)`` (``uint8`` ``(n, C, H, W)``).

    Images are produced on first use and cached by the shared store; :meth:`load_all` decodes
    everything up front (useful to time loading, or to surface unreadable files early).
    """

    def __init__(self, store: ClassStore, names: Sequence[str], groups: Sequence[str] | None = None,
                 index: Sequence[int] | None = None, description: str = "") -> None:  # fmt: skip
        self._store = store
        self._index = list(range(len(names))) if index is None else [int(i) for i in index]
        self._all_names = list(names)
        self._all_groups = list(groups) if groups is not None else [""] * len(names)
        if len(self._all_groups) != len(self._all_names):
            raise ValueError(f"groups has {len(self._all_groups)} entries; expected one per class ({len(names)})")
        self.description = description

    # construction -----------------------------------------------------------------------------
    @classmethod
    def from_tensors(cls, tensors: Sequence[torch.Tensor | np.ndarray], names: Sequence[str] | None = None,
                     groups: Sequence[str] | None = None, description: str = "tensors") -> ImageClasses:  # fmt: skip
        """Classes from in-memory images, one ``uint8`` array per class, ``(n, H, W)`` or ``(n, C, H, W)``."""
        out = []
        for i, t in enumerate(tensors):
            t = torch.as_tensor(t)
            if t.dtype != torch.uint8 or t.ndim not in (3, 4) or t.shape[0] == 0:
                raise ValueError(
                    f"tensors[{i}] is {t.dtype} of shape {tuple(t.shape)}: each class must be a non-empty "
                    "uint8 array (n, H, W) or (n, C, H, W)"
                )
            out.append(t[:, None] if t.ndim == 3 else t)
        names = [str(i) for i in range(len(out))] if names is None else [str(n) for n in names]
        if len(names) != len(out):
            raise ValueError(f"names has {len(names)} entries; expected one per class ({len(out)})")
        return cls(TensorStore(out), names, groups, description=description)

    @classmethod
    def from_labels(cls, images: np.ndarray, labels: Sequence[Any], *, names: Mapping[Any, str] | None = None,
                    groups: Mapping[Any, str] | None = None, description: str = "arrays") -> ImageClasses:  # fmt: skip
        """Classes from one channels-last ``uint8`` array ``(N, H, W[, C])`` and a label per image.

        Classes are the distinct labels in sorted order; ``names``/``groups`` map a label to its
        name/group (default: the label as text, no group).
        """
        labels = np.asarray(labels)
        if images.ndim not in (3, 4) or images.dtype != np.uint8:
            raise ValueError(f"images is {images.dtype} of shape {images.shape}; expected uint8 (N, H, W[, C])")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels has shape {labels.shape}; expected ({images.shape[0]},), one per image")
        keys, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(keys)))[:-1]
        indices = np.split(order, bounds)
        keys = keys.tolist()
        class_names = [str(names[k]) if names is not None else str(k) for k in keys]
        class_groups = [str(groups[k]) for k in keys] if groups is not None else None
        return cls(ArrayStore(images, indices), class_names, class_groups, description=description)

    # views -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        what = f" from {self.description}" if self.description else ""
        return f"ImageClasses({len(self)} classes, {self.n_images} images{what})"

    @property
    def names(self) -> list[str]:
        return [self._all_names[i] for i in self._index]

    @property
    def groups(self) -> list[str]:
        return [self._all_groups[i] for i in self._index]

    @property
    def counts(self) -> list[int]:
        return [self._store.count(i) for i in self._index]

    @property
    def n_images(self) -> int:
        return sum(self.counts)

    def count(self, i: int) -> int:
        return self._store.count(self._index[i])

    def images(self, i: int, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class ``i``'s images, ``uint8`` ``(n, C, H, W)``, at ``size`` = (height, width) if given.

        Decoded on first call and cached; resized copies are cached per size too.
        """
        if size is None:
            return self._store.images(self._index[i])
        return self._store.resized(self._index[i], size)

    def load_all(self) -> ImageClasses:
        """Decode every class now (errors for unreadable files surface here); returns ``self``."""
        for i in self._index:
            self._store.images(i)
        return self

    def subset(self, indices: Sequence[int]) -> ImageClasses:
        """The classes at ``indices`` (positions in this object), sharing the image cache."""
        n = len(self)
        picked = [int(i) for i in indices]
        bad = [i for i in picked if not 0 <= i < n]
        if bad:
            raise ValueError(f"indices {bad[:5]} are not allowed: positions in 0..{n - 1}")
        out = ImageClasses.__new__(ImageClasses)
        out.__dict__.update(self.__dict__)
        out._index = [self._index[i] for i in picked]
        return out

    def split(self, splits: Mapping[str, float | int] = DEFAULT_SPLITS, *, seed: int = 0,
              by: str = "class") -> dict[str, ImageClasses]:  # fmt: skip
        """Disjoint class-level splits, e.g. ``{"train": 0.7, "val": 0.1, "test": 0.2}``.

        Values are all fractions (in (0, 1], summing to at most 1) or all class counts (ints >= 1,
        summing to at most the number of classes). ``by="group"`` assigns whole groups (Omniglot
        alphabets) to splits, and the fractions or counts then refer to groups. The assignment is a
        random permutation drawn from ``seed``; each split keeps the original class order. A split
        that would come out empty is an error.
        """
        check_choice("by", by, ("class", "group"))
        if not isinstance(splits, Mapping) or not splits:
            raise ValueError(f"splits={splits!r} is not allowed: a non-empty mapping name -> fraction or count")
        units = sorted(set(self.groups)) if by == "group" else list(range(len(self)))
        sizes = _split_sizes(splits, len(units), by)
        perm = torch.randperm(len(units), generator=generator(seed, "class-split")).tolist()
        out, start = {}, 0
        for name, size in sizes.items():
            chosen = [units[p] for p in perm[start : start + size]]
            start += size
            if by == "group":
                chosen_set = set(chosen)
                positions = [i for i, g in enumerate(self.groups) if g in chosen_set]
            else:
                positions = sorted(chosen)
            out[name] = self.subset(positions)
        return out


def _split_sizes(splits: Mapping[str, float | int], n_units: int, by: str) -> dict[str, int]:
    unit = "classes" if by == "class" else "groups"
    values = list(splits.values())
    ints = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)
    reals = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if ints:
        if any(v < 1 for v in values) or sum(values) > n_units:
            raise ValueError(
                f"splits={dict(splits)!r} is not allowed: counts must be >= 1 and sum to at most the "
                f"{n_units} {unit} available"
            )
        return dict(splits)
    if not reals or any(not 0 < v <= 1 for v in values) or sum(values) > 1 + 1e-9:
        raise ValueError(
            f"splits={dict(splits)!r} is not allowed: all fractions in (0, 1] summing to at most 1, "
            "or all integer counts"
        )
    bounds = np.round(np.cumsum([0.0, *values]) * n_units + 1e-9).astype(int)
    sizes = {name: int(b - a) for name, a, b in zip(splits, bounds[:-1], bounds[1:], strict=True)}
    empty = [name for name, s in sizes.items() if s == 0]
    if empty:
        raise ValueError(
            f"splits={dict(splits)!r} is not allowed: with {n_units} {unit} the split(s) {empty} would be "
            "empty; raise their fractions or use more classes"
        )
    return sizes


# ---------------------------------------------------------------------------------------------
# Folders and zip files


@dataclass
class ClassEntry:
    """A class found in a folder or zip: its name, group and image files (sorted by name)."""

    name: str
    group: str
    files: list[FileRef]


def scan_image_source(path: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[ClassEntry]:
    """The classes in a folder or zip (see the module docstring), sorted by name; reads no image."""
    path = pathlib.Path(path).expanduser()
    exts = tuple(e.lower() for e in extensions)
    if not path.exists():
        raise FileNotFoundError(f"path={str(path)!r} does not exist")
    found: dict[str, list[FileRef]] = {}
    if path.is_file():
        with open_zip(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir() and _visible(i.filename)]
        infos = [i for i in infos if i.filename.lower().endswith(exts)]
        prefix = path.stem + "/"
        strip = bool(infos) and all(i.filename.startswith(prefix) for i in infos)
        for info in infos:
            rel = info.filename[len(prefix) :] if strip else info.filename
            folder, _, _ = rel.rpartition("/")
            found.setdefault(folder, []).append(FileRef(path, info.filename, True, info.CRC, info.file_size))
    else:
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if _visible(d))
            rel = pathlib.Path(folder).relative_to(path).as_posix()
            rel = "" if rel == "." else rel
            for f in files:
                if _visible(f) and f.lower().endswith(exts):
                    member = f"{rel}/{f}" if rel else f
                    found.setdefault(rel, []).append(FileRef(path, member, False, None, None))
    if "" in found:
        raise ValueError(
            f"path={str(path)!r} holds image files at its top level ({found[''][0].member}, ...): "
            "expected one folder per class (class/image or group/class/image)"
        )
    if not found:
        raise ValueError(f"path={str(path)!r} holds no image files ({', '.join(exts)}) in class folders")
    return [
        ClassEntry(name, name.rpartition("/")[0], sorted(files, key=lambda r: r.member))
        for name, files in sorted(found.items())
    ]


def _visible(name: str) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in name.split("/") if part)


def classes_from_entries(entries: Sequence[ClassEntry], *, mode: str = "L", image_size: Any = None,
                         invert: bool = False, description: str = "") -> ImageClasses:  # fmt: skip
    """An :class:`ImageClasses` over scanned classes, decoding each class's files on first use."""
    check_choice("mode", mode, MODES)
    size = check_size("image_size", image_size)
    store = FileStore([e.files for e in entries], mode=mode, image_size=size, invert=bool(invert))
    return ImageClasses(store, [e.name for e in entries], [e.group for e in entries], description=description)


def load_image_folder(path: str | os.PathLike, *, mode: str = "L", image_size: Any = None, invert: bool = False,
                      extensions: Sequence[str] = IMAGE_EXTENSIONS) -> ImageClasses:  # fmt: skip
    """Classes from a folder or a zip in the ``[group/]class/image`` layout (Omniglot's ``alphabet/character/image``).

    Parameters
    ----------
    path : str or PathLike
        The folder or zip file.
    mode : str
        ``"L"`` (one channel) or ``"RGB"``.
    image_size : int, (int, int) or None
        Resizes every image as it is decoded (Lanczos); ``None`` keeps the files' sizes, and a class
        whose images differ in size is then an error.
    invert : bool
        Map a pixel ``v`` to ``255 - v`` (dark strokes on white become bright on black).
    extensions : sequence of str
        The file endings that count as images.

    Returns
    -------
    ImageClasses
        One class per folder that directly holds images; nothing is decoded until a class is first used.
    """
    check_choice("mode", mode, MODES)
    check_size("image_size", image_size)
    entries = scan_image_source(path, extensions)
    return classes_from_entries(entries, mode=mode, image_size=image_size, invert=invert, description=str(path))


def data_roots(path: str | os.PathLike | None, subdirs: Sequence[str]) -> list[pathlib.Path]:
    """Folders to look in: ``path`` (else ``$METALAB_DATA``) and its ``subdirs``; empty when neither is set."""
    root = path if path is not None else os.environ.get("METALAB_DATA")
    if not root:
        return []
    root = pathlib.Path(root).expanduser()
    return [root, *(root / s for s in subdirs)]


def looked_in(roots: Sequence[pathlib.Path]) -> str:
    return ", ".join(map(str, roots)) if roots else "nowhere (no path given and METALAB_DATA is unset)"
