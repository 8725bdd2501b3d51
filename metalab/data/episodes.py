"""N-way K-shot episodes over any :class:`~metalab.data.image_folders.ImageClasses`.

An episode picks ``ways`` classes at random and, from each, ``shots + queries`` distinct images;
the chosen classes get the labels ``0..ways-1`` in the (random) order they were drawn. Tensors:

* ``support_x`` ``(ways * shots, C, H, W)`` float32, ``support_y`` ``(ways * shots,)`` int64, class-major
  (``[0]*shots + [1]*shots + ...``);
* ``query_x`` ``(ways * queries, C, H, W)``, ``query_y`` likewise;
* :meth:`EpisodeSampler.sample_batch` stacks ``B`` episodes into :class:`EpisodeBatch` with a
  leading ``(B, ...)`` dimension, ready for ``torch.func.vmap`` over tasks.

Pixels are in ``[0, 1]`` unless ``normalize=(mean, std)`` is given (then ``(x - mean) / std``
per channel). ``rotations`` adds rotated copies of every class as *new* classes (the usual
Omniglot augmentation: 0/90/180/270 degrees gives four times the classes); rotation happens
after the class-level split, so a held-out character never appears in training at any angle.
Images are resized to ``image_size`` (28x28 by default) once per class (Lanczos, with PIL) and
kept as ``uint8`` in the classes' shared cache, so samplers over the same classes resize once.

Episode ``i`` depends only on ``(seed, stream, i)``: :meth:`EpisodeSampler.episode` gives random
access, and :meth:`~EpisodeSampler.sample` / :meth:`~EpisodeSampler.sample_batch` walk ``i = 0, 1, ...``,
so a batch of 32 equals 32 single draws. No global random state is touched.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from metalab.core.checks import check_int
from metalab.core.seeding import generator
from metalab.data.image_folders import DEFAULT_SPLITS, ImageClasses, check_size

ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class Episode:
    """One few-shot task; ``classes[label]`` is the sampler's class index behind each label."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor

    def to(self, device: str | torch.device) -> Episode:
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass(frozen=True)
class EpisodeBatch(Episode):
    """``B`` episodes stacked: every field of :class:`Episode` with a leading ``(B, ...)`` dimension."""

    def __len__(self) -> int:
        return int(self.support_x.shape[0])

    def __getitem__(self, b: int) -> Episode:
        return Episode(**{f.name: getattr(self, f.name)[b] for f in fields(self)})

    @classmethod
    def stack(cls, episodes: Sequence[Episode]) -> EpisodeBatch:
        if not episodes:
            raise ValueError("episodes is empty: stack at least one episode")
        # NumPy's stack: one plain copy, free of torch's intra-op threading overhead on CPU tensors
        return cls(**{f.name: _stack([getattr(e, f.name) for e in episodes]) for f in fields(Episode)})


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    if tensors[0].device.type != "cpu":
        return torch.stack(tensors)
    return torch.from_numpy(np.stack([t.numpy() for t in tensors]))


class EpisodeSampler:
    """Draws N-way K-shot episodes from ``classes`` (see the module docstring).

    Parameters
    ----------
    classes : ImageClasses
        Where the episodes' classes and images come from.
    ways, shots, queries : int
        N (classes per episode), K (support images per class) and query images per class (may be 0).
    image_size : int, (int, int) or None
        Size of the episodes' images; ``None`` keeps the stored size, which must then agree across
        classes.
    rotations : bool or sequence of int
        ``False``, ``True`` for 0/90/180/270, or a subset of those angles: rotated copies of every
        class become new classes.
    normalize : (mean, std), optional
        Scalars or one per channel.
    seed : int
        Seeds the episodes: episode ``i`` depends only on ``(seed, stream, i)``.
    stream : str
        The random stream's name, so that samplers over different splits draw independently.

    Raises
    ------
    ValueError
        Naming the argument, when a value is out of range or the classes cannot give such episodes.
    """

    def __init__(self, classes: ImageClasses, ways: int = 5, shots: int = 1, queries: int = 15, *,
                 image_size: Any = 28, rotations: bool | Sequence[int] = False,
                 normalize: tuple[Any, Any] | None = None, seed: int = 0, stream: str = "episodes") -> None:  # fmt: skip
        if not isinstance(classes, ImageClasses):
            raise ValueError(f"classes of type {type(classes).__name__} is not allowed: an ImageClasses")
        if len(classes) == 0:
            raise ValueError("classes is empty (0 classes): an empty split cannot give episodes; check the splits")
        self.classes = classes
        self.rotations = _check_rotations(rotations)
        self.image_size = check_size("image_size", image_size)
        if self.image_size is not None and self.image_size[0] != self.image_size[1] and self._turns_quarter():
            raise ValueError(
                f"image_size={image_size!r} is not allowed with rotations={self.rotations}: "
                "90/270-degree rotations need square images"
            )
        n_classes = len(classes) * len(self.rotations)
        rot = f" ({len(classes)} classes x {len(self.rotations)} rotations)" if len(self.rotations) > 1 else ""
        self.ways = check_int("ways", ways, 1, n_classes, f" (the number of classes available{rot})")
        self.shots = check_int("shots", shots, 1)
        self.queries = check_int("queries", queries, 0)
        need = self.shots + self.queries
        counts = classes.counts
        smallest = min(range(len(counts)), key=counts.__getitem__)
        if counts[smallest] < need:
            raise ValueError(
                f"shots={self.shots} + queries={self.queries} = {need} is not allowed: class "
                f"{classes.names[smallest]!r} has only {counts[smallest]} images; lower shots or queries "
                "(or drop the small classes with ImageClasses.subset)"
            )
        self.normalize = _check_normalize(normalize)
        self.seed = check_int("seed", seed, 0, 2**63 - 1)
        self.stream = str(stream)
        self.n_classes = n_classes
        self._ready: dict[int, torch.Tensor] = {}
        self._shape: tuple[int, int, int] | None = None
        self._next = 0

    # --------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"EpisodeSampler({self.ways}-way {self.shots}-shot, {self.queries} queries, "
            f"{self.n_classes} classes, image_size={self.image_size}, seed={self.seed})"
        )

    def _turns_quarter(self) -> bool:
        return any(r % 180 for r in self.rotations)

    def class_name(self, c: int) -> str:
        """The name of sampler class ``c`` (a base class, with ``@rot90`` etc. for rotated copies)."""
        base, r = divmod(int(c), len(self.rotations))
        angle = self.rotations[r]
        return self.classes.names[base] + (f"@rot{angle}" if angle else "")

    def class_images(self, base: int) -> torch.Tensor:
        """Base class ``base``'s images at ``image_size``, ``uint8`` ``(n, C, H, W)`` (computed once)."""
        out = self._ready.get(base)
        if out is not None:
            return out
        out = self.classes.images(base, size=self.image_size)
        shape = tuple(out.shape[1:])
        if self._shape is None:
            if self._turns_quarter() and shape[1] != shape[2]:
                raise ValueError(
                    f"rotations={self.rotations} need square images but class {self.classes.names[base]!r} is "
                    f"{shape[1]}x{shape[2]}; pass image_size=(side, side)"
                )
            if self.normalize is not None and self.normalize[0].shape[0] not in (1, shape[0]):
                raise ValueError(
                    f"normalize has {self.normalize[0].shape[0]} channel values but the images have {shape[0]} channels"
                )
            self._shape = shape
        elif shape != self._shape:
            raise ValueError(
                f"class {self.classes.names[base]!r} has images of shape {shape} but earlier classes have "
                f"{self._shape} (channels, height, width); pass image_size=(height, width) to resize all classes"
            )
        self._ready[base] = out
        return out

    def episode(self, index: int) -> Episode:
        """Episode number ``index`` (a pure function of ``seed``, ``stream`` and ``index``)."""
        index = check_int("index", index, 0)
        g = generator(self.seed, f"{self.stream}:{index}")
        picked = torch.randperm(self.n_classes, generator=g)[: self.ways]
        n_rot = len(self.rotations)
        # Assembled in NumPy: these arrays are small, and torch's intra-op threads cost more than they
        # save here (badly so when the cores are shared).
        blocks = []
        for c in picked.tolist():
            base, r = divmod(c, n_rot)
            images = self.class_images(base).numpy()
            chosen = torch.randperm(images.shape[0], generator=g)[: self.shots + self.queries].numpy()
            block = images[chosen]
            if self.rotations[r]:
                block = np.rot90(block, k=self.rotations[r] // 90, axes=(-2, -1))
            blocks.append(block)
        x = np.stack(blocks)  # uint8 (ways, shots + queries, C, H, W)
        shape = x.shape[2:]
        labels = torch.arange(self.ways, dtype=torch.int64)
        return Episode(
            support_x=self._to_float(x[:, : self.shots].reshape(-1, *shape)),
            support_y=labels.repeat_interleave(self.shots),
            query_x=self._to_float(x[:, self.shots :].reshape(-1, *shape)),
            query_y=labels.repeat_interleave(self.queries),
            classes=picked,
        )

    def _to_float(self, x: np.ndarray) -> torch.Tensor:
        out = x.astype(np.float32)
        out *= np.float32(1.0 / 255.0)
        if self.normalize is not None:
            mean, std = (v.numpy().reshape(-1, 1, 1) for v in self.normalize)
            out -= mean
            out /= std
        return torch.from_numpy(out)

    def sample(self) -> Episode:
        """The next episode of the stream (episode 0, 1, 2, ... on successive calls)."""
        out = self.episode(self._next)
        self._next += 1
        return out

    def sample_batch(self, batch_size: int) -> EpisodeBatch:
        """The next ``batch_size`` episodes, stacked with a leading ``(B, ...)`` dimension."""
        batch_size = check_int("batch_size", batch_size, 1)
        start = self._next
        self._next += batch_size
        return EpisodeBatch.stack([self.episode(i) for i in range(start, start + batch_size)])

    def batch(self, start: int, batch_size: int) -> EpisodeBatch:
        """Episodes ``start .. start + batch_size - 1`` stacked (random access; the stream is not moved)."""
        start = check_int("start", start, 0)
        batch_size = check_int("batch_size", batch_size, 1)
        return EpisodeBatch.stack([self.episode(i) for i in range(start, start + batch_size)])

    def reset(self, position: int = 0) -> None:
        """Move the stream so that the next :meth:`sample` returns episode ``position``."""
        self._next = check_int("position", position, 0)

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample()


def episode_samplers(classes: ImageClasses, splits: Mapping[str, float | int] = DEFAULT_SPLITS, *,
                     seed: int = 0, by: str = "class", **sampler_args: Any) -> dict[str, EpisodeSampler]:  # fmt: skip
    """Split ``classes`` at class level (:meth:`ImageClasses.split`) and make one sampler per split.

    Parameters
    ----------
    classes : ImageClasses
        The classes to split.
    splits : mapping
        Split name -> fraction of the classes (or groups), or -> class count.
    seed : int
        Seeds the split and every sampler.
    by : str
        ``"class"`` or ``"group"`` (keep each group, e.g. an Omniglot alphabet, in one split).
    **sampler_args
        ways, shots, queries, image_size, rotations, normalize of every :class:`EpisodeSampler`.

    Returns
    -------
    dict of EpisodeSampler
        One sampler per split, each on its own stream ``"episodes:<split name>"``.
    """
    parts = classes.split(splits, seed=seed, by=by)
    return {
        name: EpisodeSampler(part, seed=seed, stream=f"episodes:{name}", **sampler_args) for name, part in parts.items()
    }


def _check_rotations(rotations: Any) -> tuple[int, ...]:
    if rotations is True:
        return ROTATIONS
    if rotations is False or rotations is None:
        return (0,)
    ok = isinstance(rotations, Sequence) and len(rotations) > 0
    ok = ok and all(isinstance(r, numbers.Integral) and not isinstance(r, bool) and r in ROTATIONS for r in rotations)
    if not ok or len(set(rotations)) != len(rotations):
        raise ValueError(
            f"rotations={rotations!r} is not allowed: False, True (all of {ROTATIONS}) or distinct angles from {ROTATIONS}"
        )
    return tuple(int(r) for r in rotations)


def _check_normalize(normalize: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    if normalize is None:
        return None
    try:
        mean, std = normalize
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        mean = std = None
    ok = mean is not None and mean.numel() >= 1 and std.numel() >= 1
    ok = ok and torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()
    if not ok or mean.numel() != std.numel():
        raise ValueError(
            f"normalize={normalize!r} is not allowed: None (pixels in [0, 1]) or (mean, std) with finite "
            "values, std > 0, as scalars or one per channel"
        )
    return mean, std
