"""Where the images of one class come from: *stores* that produce class ``i`` as a ``uint8`` tensor
``(n, C, H, W)``, decoded the first time it is asked for and then cached, so every image is decoded once.

:class:`TensorStore` holds tensors, :class:`ArrayStore` slices one array, :class:`EncodedStore`
decodes image bytes kept in memory and :class:`FileStore` reads image files from folders or, in place,
from zip files (:class:`FileRef`).  :class:`~metalab.data.image_folders.ImageClasses` puts a store
together with class names and groups.
"""

from __future__ import annotations

import io
import pathlib
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

MAX_MEMBER_BYTES = 64 * 2**20
MAX_COMPRESSION_RATIO = 100
RATIO_CHECKED_BYTES = 2**20

#: what reading a damaged archive or member raises inside ``zipfile`` and ``zlib``
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError)


def _what_it_is(path: pathlib.Path) -> str:
    """Why ``path`` is not a readable zip, in words."""
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as f:
        start = f.read(4)
    if start.startswith(b"PK"):
        return f"it is a zip archive cut short or corrupt ({size} bytes; its closing directory is missing or damaged)"
    return f"it is not a zip archive (it begins with {start!r})"


def open_zip(path: str | pathlib.Path) -> zipfile.ZipFile:
    """``zipfile.ZipFile(path)``; an empty, truncated, corrupt or non-zip file raises ValueError saying which."""
    path = pathlib.Path(path)
    try:
        return zipfile.ZipFile(path)
    except (FileNotFoundError, PermissionError):
        raise
    except _ZIP_ERRORS as err:
        raise ValueError(f"cannot read the zip file {path}: {_what_it_is(path)} ({err})") from None


def check_declared_size(where: str, declared: int, compressed: int | None = None) -> None:
    """Refuse a file or zip member whose declared size (or, for a member, expansion ratio) is over the limits."""
    if declared > MAX_MEMBER_BYTES:
        raise ValueError(
            f"refused to read {where}: it declares {declared} bytes, more than the {MAX_MEMBER_BYTES} bytes "
            "(64 MiB) allowed for one file"
        )
    if compressed is not None and declared > RATIO_CHECKED_BYTES and declared > MAX_COMPRESSION_RATIO * compressed:
        raise ValueError(
            f"refused to read {where}: it would expand from {compressed} to {declared} bytes, more than "
            f"{MAX_COMPRESSION_RATIO} times (a zip bomb?)"
        )


def read_member(archive: zipfile.ZipFile, member: str | zipfile.ZipInfo, path: pathlib.Path) -> bytes:
    """The bytes of ``member`` of ``archive`` (the zip file ``path``), after :func:`check_declared_size`; a missing or
    damaged member raises ValueError naming the file, the member and the problem."""
    name = member.filename if isinstance(member, zipfile.ZipInfo) else member
    where = f"{path}:{name}"
    try:
        info = member if isinstance(member, zipfile.ZipInfo) else archive.getinfo(name)
    except KeyError:
        raise ValueError(f"cannot read {where}: the zip file has no member {name!r}") from None
    check_declared_size(where, info.file_size, info.compress_size)
    try:
        return archive.read(info)
    except _ZIP_ERRORS as err:
        raise ValueError(f"cannot read {where}: the member is damaged ({type(err).__name__}: {err})") from None


def read_file(path: pathlib.Path) -> bytes:
    """The bytes of a file in a folder, after :func:`check_declared_size`."""
    check_declared_size(str(path), path.stat().st_size)
    return path.read_bytes()


class ClassStore:
    """Produces the images of class ``i`` as ``uint8`` ``(n, C, H, W)``, computed once and then cached.

    Subclasses implement :meth:`count` (cheap, without decoding) and :meth:`_make`.
    """

    def __init__(self) -> None:
        self._cache: dict[int, torch.Tensor] = {}
        self._resized: dict[tuple[int, int, int], torch.Tensor] = {}

    def count(self, i: int) -> int:
        raise NotImplementedError

    def _make(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def images(self, i: int) -> torch.Tensor:
        out = self._cache.get(i)
        if out is None:
            out = self._make(i)
            if out.dtype != torch.uint8 or out.ndim != 4:
                raise TypeError(
                    f"{type(self).__name__} made {tuple(out.shape)} {out.dtype}; expected uint8 (n, C, H, W)"
                )
            self._cache[i] = out
        return out

    def resized(self, i: int, size: tuple[int, int]) -> torch.Tensor:
        """Class ``i``'s images at ``size`` = (height, width) (Lanczos), cached per size."""
        raw = self.images(i)
        if tuple(raw.shape[-2:]) == tuple(size):
            return raw
        key = (i, *size)
        out = self._resized.get(key)
        if out is None:
            out = self._resized[key] = resize_uint8(raw, size)
        return out


def resize_uint8(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``uint8`` ``(n, C, H, W)`` images to ``size`` = (height, width) with PIL's Lanczos filter."""
    h, w = size
    src = images.numpy()
    out = np.empty((*src.shape[:2], h, w), dtype=np.uint8)
    for k in range(src.shape[0]):
        for ch in range(src.shape[1]):
            out[k, ch] = np.asarray(
                Image.fromarray(src[k, ch]).resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)
            )
    return torch.from_numpy(out)


class TensorStore(ClassStore):
    """Classes already in memory: one ``uint8`` tensor ``(n, C, H, W)`` per class."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self._cache = dict(enumerate(tensors))

    def count(self, i: int) -> int:
        return int(self._cache[i].shape[0])


class ArrayStore(ClassStore):
    """Classes as index lists into one channels-last array ``(N, H, W)`` or ``(N, H, W, C)`` of uint8."""

    def __init__(self, array: np.ndarray, indices: Sequence[np.ndarray]) -> None:
        super().__init__()
        self._array = array
        self._indices = [np.asarray(ix, dtype=np.int64) for ix in indices]

    def count(self, i: int) -> int:
        return len(self._indices[i])

    def _make(self, i: int) -> torch.Tensor:
        block = self._array[self._indices[i]]
        block = block[:, None] if block.ndim == 3 else block.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(block, dtype=np.uint8))


class EncodedStore(ClassStore):
    """Classes as index lists into a sequence of encoded images (PNG/JPEG bytes), decoded per class."""

    def __init__(self, blobs: Sequence[bytes], indices: Sequence[np.ndarray], where: str, mode: str = "RGB") -> None:
        super().__init__()
        self._blobs, self._where, self._mode = blobs, where, mode
        self._indices = [np.asarray(ix, dtype=np.int64) for ix in indices]

    def count(self, i: int) -> int:
        return len(self._indices[i])

    def _make(self, i: int) -> torch.Tensor:
        arrays = [
            decode_image(bytes(self._blobs[k]), f"{self._where} (image {k})", self._mode, None, False)
            for k in self._indices[i].tolist()
        ]
        return _stack_class(arrays, [f"{self._where} (image {k})" for k in self._indices[i].tolist()], "image_size")


@dataclass(frozen=True)
class FileRef:
    """One image file: ``member`` inside the zip ``container``, or the file ``container / member``."""

    container: pathlib.Path
    member: str
    in_zip: bool
    crc: int | None = None  # zip CRC-32 (lets duplicates be recognised without reading them)
    size: int | None = None

    def where(self) -> str:
        return f"{self.container}:{self.member}" if self.in_zip else str(self.container / self.member)


class FileStore(ClassStore):
    """Classes as lists of image files (in folders or zips), decoded with PIL on first use."""

    def __init__(self, files: Sequence[Sequence[FileRef]], *, mode: str = "L",
                 image_size: tuple[int, int] | None = None, invert: bool = False) -> None:  # fmt: skip
        super().__init__()
        self._files = [list(f) for f in files]
        self._mode, self._size, self._invert = mode, image_size, invert
        self._zips: dict[pathlib.Path, zipfile.ZipFile] = {}

    def count(self, i: int) -> int:
        return len(self._files[i])

    def _read(self, ref: FileRef) -> bytes:
        if not ref.in_zip:
            return read_file(ref.container / ref.member)
        archive = self._zips.get(ref.container)
        if archive is None:
            archive = self._zips[ref.container] = open_zip(ref.container)
        return read_member(archive, ref.member, ref.container)

    def _make(self, i: int) -> torch.Tensor:
        refs = self._files[i]
        arrays = [decode_image(self._read(r), r.where(), self._mode, self._size, self._invert) for r in refs]
        return _stack_class(arrays, [r.where() for r in refs], "image_size")

    def close(self) -> None:
        for archive in self._zips.values():
            archive.close()
        self._zips.clear()

    def __getstate__(self) -> dict:  # open zip handles do not pickle; they are reopened on demand
        state = self.__dict__.copy()
        state["_zips"] = {}
        return state


def decode_image(data: bytes, where: str, mode: str, size: tuple[int, int] | None, invert: bool) -> np.ndarray:
    """Decode one image to ``uint8`` ``(C, H, W)``; an unreadable file raises ValueError naming ``where``
    (an empty file, one in no image format PIL knows, a truncated one, or one over PIL's pixel limit)."""
    if not data:
        raise ValueError(f"cannot read the image file {where}: it is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.LANCZOS, reducing_gap=3.0)
            array = np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError(
            f"cannot read the image file {where}: not in an image format PIL knows ({len(data)} bytes beginning "
            f"{data[:8]!r})"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read the image file {where}: {err}") from None
    if invert:
        array = 255 - array
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _stack_class(arrays: list[np.ndarray], where: list[str], size_argument: str) -> torch.Tensor:
    first = arrays[0].shape
    for a, w in zip(arrays, where, strict=True):
        if a.shape != first:
            raise ValueError(
                f"images of mixed sizes in one class: {where[0]} is {first[1]}x{first[2]} but {w} is "
                f"{a.shape[1]}x{a.shape[2]} (height x width); pass {size_argument}=(height, width) "
                "to resize every image as it is read"
            )
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
