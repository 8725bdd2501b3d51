"""Loaders for the files in which miniImageNet, tieredImageNet, CIFAR-FS and FC100 are usually shared.

Each loader reads one split (``"train"``, ``"val"`` or ``"test"``; the class-level splits are fixed
by the files) and returns an :class:`~metalab.data.image_folders.ImageClasses` of RGB ``uint8``
images for :class:`~metalab.data.episodes.EpisodeSampler`. ``path`` is the file itself or a folder
holding it (default ``$METALAB_DATA``; the usual sub-folder names are tried too). Nothing here
downloads: the data sets are ImageNet/CIFAR derivatives distributed by their authors (and by
libraries such as learn2learn) under their own terms.

The files are Python pickles, and ``pickle.load`` runs whatever code a pickle names.  They are read
with :class:`ArrayUnpickler`, which builds only numpy arrays, numpy dtypes and scalars and plain
containers (list, dict, tuple, str, bytes, int, float) and refuses every other global with a
ValueError naming the file and the global, before anything of it is imported or called.

Formats:

* **miniImageNet** (Vinyals et al. 2016, Ravi & Larochelle split, 64/16/20 classes):
  ``mini-imagenet-cache-{split}.pkl``, a dict with ``image_data`` ``(N, 84, 84, 3)`` uint8 and
  ``class_dict`` ``{wordnet id: [image indices]}``.
* **tieredImageNet** (Ren et al. 2018, 351/97/160 classes in 34 super-categories): the layout of
  the authors' release, ``{split}_labels.pkl`` (a dict with ``label_specific`` per image and, when
  present, ``label_general`` super-category ids and ``label_specific_str`` / ``label_general_str``
  names) with the images either decoded in ``{split}_images.npz`` (key ``images``,
  ``(N, 84, 84, 3)`` uint8) or PNG-encoded in ``{split}_images_png.pkl`` (a sequence of byte
  strings). The npz is preferred when both exist. Labels files that use the key ``labels``
  instead of ``label_specific`` are accepted. Super-categories become the classes' groups.
* **CIFAR-FS** (Bertinetto et al. 2019, 64/16/20) and **FC100** (Oreshkin et al. 2018, 60/20/20):
  ``CIFAR_FS_{split}.pickle`` / ``FC100_{split}.pickle``, a dict with ``data`` ``(N, 32, 32, 3)``
  uint8 and ``labels`` (CIFAR-100 fine label per image); often written by Python 2, so read
  with ``encoding="latin1"``.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from metalab.core.checks import check_choice
from metalab.data.image_folders import ImageClasses, data_roots, looked_in
from metalab.data.image_stores import ArrayStore, EncodedStore

SPLITS = ("train", "val", "test")


def _find(path: Any, filename: str, subdirs: Sequence[str], dataset: str, how: str) -> pathlib.Path:
    if path is not None and pathlib.Path(path).expanduser().is_file():
        return pathlib.Path(path).expanduser()
    roots = data_roots(path, subdirs)
    for root in roots:
        if (root / filename).is_file():
            return root / filename
    raise FileNotFoundError(
        f"no {dataset} file {filename} found; looked in {looked_in(roots)}. {how} Pass its folder as "
        f"`path` or set METALAB_DATA to it (or to a parent holding one of {list(subdirs)}/). The "
        "notebooks and dashboard fall back to generated glyphs (metalab.data.glyphs)."
    )


CONTAINERS = ("list", "dict", "tuple", "str", "bytes", "int", "float")
#: the globals a pickle of numpy arrays and plain containers names (numpy 1 wrote ``numpy.core``,
#: numpy 2 writes ``numpy._core``; Python 3 pickles bytes at protocol 2 as ``_codecs.encode``)
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
        *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
        *((builtins, name) for builtins in ("builtins", "__builtin__") for name in CONTAINERS),
        ("_codecs", "encode"),
    }
)


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside :data:`ALLOWED_GLOBALS`."""

    def __init__(self, module: str, name: str):
        self.global_name = f"{module}.{name}"
        super().__init__(f"the pickle names {self.global_name}, which is not allowed")


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`: numpy arrays, dtypes and scalars and plain
    containers.  Any other global (``os.system``, ``builtins.eval``, a class) raises :class:`RefusedGlobal`
    before it is imported, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(module, name)
        return super().find_class(module, name)


def _load_pickle(file: pathlib.Path) -> Any:
    """The arrays and containers pickled in ``file`` (Python 2 strings read as latin-1).

    Raises
    ------
    ValueError
        Naming ``file``: a global outside :data:`ALLOWED_GLOBALS` (named too), or a file that is not
        a readable pickle.
    """
    try:
        with open(file, "rb") as f:
            return ArrayUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as err:
        raise ValueError(
            f"refused to load {file}: it names the Python global {err.global_name}, and a pickle can run code "
            "through such a name; only numpy arrays, numpy dtypes and scalars and plain containers (list, dict, "
            "tuple, str, bytes, int, float) are read"
        ) from None
    except Exception as err:  # any unpickling failure means the file is not in the expected format
        raise ValueError(f"cannot read the pickle file {file}: {type(err).__name__}: {err}") from None


def _get(obj: Any, key: str, file: pathlib.Path, expected: str) -> Any:
    if isinstance(obj, dict):
        for k in (key, key.encode()):
            if k in obj:
                return obj[k]
    keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{file} lacks the key {key!r} ({expected}); it holds {keys}")


def _has(obj: Any, key: str) -> bool:
    return isinstance(obj, dict) and (key in obj or key.encode() in obj)


def _check_images(images: Any, file: pathlib.Path, key: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or images.shape[0] == 0:
        raise ValueError(
            f"{file}: {key!r} is {images.dtype} of shape {images.shape}; expected uint8 (N, H, W, 3), N >= 1"
        )
    return images


def _check_labels(labels: Any, n: int, file: pathlib.Path, key: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{file}: {key!r} has shape {labels.shape}; expected ({n},), one label per image")
    return labels


# ---------------------------------------------------------------------------------------------


def load_mini_imagenet(path: str | os.PathLike | None = None, split: str = "train") -> ImageClasses:
    """One split of miniImageNet from ``mini-imagenet-cache-{split}.pkl`` (see the module docstring).

    Parameters
    ----------
    path : str or PathLike, optional
        The file's folder (or a parent holding ``mini-imagenet/``); default ``$METALAB_DATA``.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.

    Returns
    -------
    ImageClasses
        RGB ``uint8`` images by class name.
    """
    check_choice("split", split, SPLITS)
    file = _find(
        path, f"mini-imagenet-cache-{split}.pkl", ("mini-imagenet", "miniImageNet", "mini_imagenet"), "miniImageNet",
        "It is distributed as mini-imagenet-cache-{train,val,test}.pkl (e.g. with learn2learn).",
    )  # fmt: skip
    data = _load_pickle(file)
    images = _check_images(_get(data, "image_data", file, "uint8 images (N, 84, 84, 3)"), file, "image_data")
    class_dict = _get(data, "class_dict", file, "class name -> image indices")
    if not isinstance(class_dict, dict) or not class_dict:
        raise ValueError(
            f"{file}: 'class_dict' is {type(class_dict).__name__}; expected a non-empty dict name -> indices"
        )
    names = sorted(class_dict)
    indices = [np.asarray(class_dict[k], dtype=np.int64) for k in names]
    for name, ix in zip(names, indices, strict=True):
        if ix.ndim != 1 or ix.size == 0 or ix.min() < 0 or ix.max() >= len(images):
            raise ValueError(f"{file}: class {name!r} lists no images or indices outside 0..{len(images) - 1}")
    return ImageClasses(ArrayStore(images, indices), [str(n) for n in names], description=str(file))


def load_tiered_imagenet(path: str | os.PathLike | None = None, split: str = "train") -> ImageClasses:
    """One split of tieredImageNet in its authors' layout (``{split}_labels.pkl`` + ``{split}_images.npz``
    or ``{split}_images_png.pkl``).

    Parameters
    ----------
    path : str or PathLike, optional
        The files' folder (or a parent holding ``tiered-imagenet/``); default ``$METALAB_DATA``.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.

    Returns
    -------
    ImageClasses
        RGB ``uint8`` images by class, with the super-categories as groups.
    """
    check_choice("split", split, SPLITS)
    subdirs = ("tiered-imagenet", "tieredImageNet", "tiered_imagenet")
    how = "It is distributed as {split}_labels.pkl with {split}_images.npz or {split}_images_png.pkl (Ren et al. 2018)."
    labels_file = _find(path, f"{split}_labels.pkl", subdirs, "tieredImageNet", how)
    folder = labels_file.parent
    meta = _load_pickle(labels_file)
    if _has(meta, "label_specific"):
        specific = _get(meta, "label_specific", labels_file, "class id per image")
    else:
        specific = _get(meta, "labels", labels_file, "class id per image (key 'label_specific' or 'labels')")
    specific = np.asarray(specific).astype(np.int64)

    npz, png = folder / f"{split}_images.npz", folder / f"{split}_images_png.pkl"
    if npz.is_file():
        try:
            with np.load(npz) as archive:
                images = archive["images"]
        except Exception as err:
            raise ValueError(f"cannot read {npz} (expected the key 'images'): {type(err).__name__}: {err}") from None
        images = _check_images(images, npz, "images")
        n = len(images)
    elif png.is_file():
        blobs = _load_pickle(png)
        if not isinstance(blobs, (list, tuple, np.ndarray)) or len(blobs) == 0:
            raise ValueError(f"{png} holds {type(blobs).__name__}; expected a non-empty sequence of PNG byte strings")
        n = len(blobs)
    else:
        raise FileNotFoundError(f"neither {npz.name} nor {png.name} found in {folder} (next to {labels_file.name})")
    specific = _check_labels(specific, n, labels_file, "label_specific")

    def names_for(key: str, ids: np.ndarray) -> dict[int, str]:
        if not _has(meta, key):
            return {int(k): str(int(k)) for k in np.unique(ids)}
        texts = _get(meta, key, labels_file, "names")
        return {int(k): str(texts[int(k)]) for k in np.unique(ids)}

    class_names = names_for("label_specific_str", specific)
    groups = None
    if _has(meta, "label_general"):
        general = np.asarray(_get(meta, "label_general", labels_file, "super-category per image")).astype(np.int64)
        general = _check_labels(general, n, labels_file, "label_general")
        general_names = names_for("label_general_str", general)
        groups = {}
        for k in np.unique(specific):
            supers = np.unique(general[specific == k])
            groups[int(k)] = general_names[int(supers[0])]
    if npz.is_file():
        return ImageClasses.from_labels(images, specific, names=class_names, groups=groups, description=str(npz))
    keys = np.unique(specific)
    indices = [np.flatnonzero(specific == k) for k in keys]
    return ImageClasses(
        EncodedStore(blobs, indices, str(png), mode="RGB"),
        [class_names[int(k)] for k in keys],
        [groups[int(k)] for k in keys] if groups is not None else None,
        description=str(png),
    )


def _load_cifar_style(
    path: Any, split: str, prefix: str, subdirs: Sequence[str], dataset: str, how: str
) -> ImageClasses:
    check_choice("split", split, SPLITS)
    file = _find(path, f"{prefix}_{split}.pickle", subdirs, dataset, how)
    data = _load_pickle(file)
    images = _check_images(_get(data, "data", file, "uint8 images (N, 32, 32, 3)"), file, "data")
    labels = _check_labels(_get(data, "labels", file, "class label per image"), len(images), file, "labels")
    return ImageClasses.from_labels(images, labels.astype(np.int64), description=str(file))


def load_cifar_fs(path: str | os.PathLike | None = None, split: str = "train") -> ImageClasses:
    """One split of CIFAR-FS from ``CIFAR_FS_{split}.pickle``.

    Parameters
    ----------
    path : str or PathLike, optional
        The file's folder (or a parent holding ``CIFAR-FS/``); default ``$METALAB_DATA``.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.

    Returns
    -------
    ImageClasses
        RGB ``uint8`` 32x32 images; classes named by CIFAR-100 label id.
    """
    return _load_cifar_style(
        path, split, "CIFAR_FS", ("CIFAR-FS", "CIFAR_FS", "cifar-fs", "cifar_fs", "cifarfs"), "CIFAR-FS",
        "It is distributed as CIFAR_FS_{train,val,test}.pickle (e.g. with MetaOptNet).",
    )  # fmt: skip


def load_fc100(path: str | os.PathLike | None = None, split: str = "train") -> ImageClasses:
    """One split of FC100 from ``FC100_{split}.pickle``.

    Parameters
    ----------
    path : str or PathLike, optional
        The file's folder (or a parent holding ``FC100/``); default ``$METALAB_DATA``.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.

    Returns
    -------
    ImageClasses
        RGB ``uint8`` 32x32 images; classes named by CIFAR-100 label id.
    """
    return _load_cifar_style(
        path, split, "FC100", ("FC100", "fc100"), "FC100",
        "It is distributed as FC100_{train,val,test}.pickle (e.g. with MetaOptNet).",
    )  # fmt: skip
