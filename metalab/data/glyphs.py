"""Embedded stand-ins for Omniglot that need no download: generated glyphs and scikit-learn's digits.

**Glyphs** (:func:`glyph_classes`): each class is a random pen drawing of one to four strokes
(cubic Bezier curves or short polylines, later strokes often starting on an earlier one, as in
handwriting). An instance of a class redraws the same strokes with the control points jittered,
a random affine map (small rotation, scale, shear, shift) and a random pen width, rendered with
``PIL.ImageDraw`` at twice the size and box-filtered down. Strokes are bright (255) on black, the
same polarity as :func:`metalab.data.omniglot.load_omniglot` with ``invert=True``.
Class ``c`` (template and instances) depends only on ``(seed, c)``, and a class is drawn only when
an episode first needs it (about a millisecond for 20 instances at 28x28), so any number of
classes costs nothing up front. They are a stand-in with Omniglot's shape (many classes, few
examples, stroke images), not a substitute for its numbers.

**Digits** (:func:`digit_classes`): the 1,797 8x8 handwritten digits that scikit-learn ships
(``load_digits``), ten classes of about 180 images, upsampled to the requested size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from metalab.core.checks import check_int
from metalab.data.image_folders import ImageClasses, check_size
from metalab.data.image_stores import ClassStore

SUPERSAMPLE = 2
BEZIER_POINTS = 12


class GlyphStore(ClassStore):
    """Renders the instances of glyph class ``c`` on first use (see the module docstring)."""

    def __init__(self, instances: int, image_size: tuple[int, int], seed: int, max_strokes: int = 4) -> None:
        super().__init__()
        self.instances, self.size, self.seed, self.max_strokes = instances, image_size, seed, max_strokes

    def count(self, i: int) -> int:
        return self.instances

    def strokes(self, c: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """Class ``c``'s template: a list of point arrays ``(m, 2)`` in the unit square."""
        rng = np.random.default_rng([self.seed, c]) if rng is None else rng
        out: list[np.ndarray] = []
        for _ in range(int(rng.integers(1, self.max_strokes + 1))):
            start = rng.uniform(0.15, 0.85, 2)
            if out and rng.random() < 0.6:  # join an earlier stroke, as a pen would
                prev = out[int(rng.integers(len(out)))]
                start = prev[int(rng.integers(len(prev)))]
            if rng.random() < 0.6:
                out.append(_bezier(np.vstack([start, rng.uniform(0.1, 0.9, (3, 2))])))
            else:
                out.append(np.vstack([start, rng.uniform(0.1, 0.9, (int(rng.integers(1, 4)), 2))]))
        return out

    def _make(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, i])
        template = self.strokes(i, rng)
        n = self.instances
        h, w = self.size
        big = np.array([w * SUPERSAMPLE, h * SUPERSAMPLE], dtype=np.float64)
        # one random affine map, shift and pen width per instance, drawn for all instances at once
        angle = rng.normal(0.0, math.radians(8), n)
        cos, sin = np.cos(angle), np.sin(angle)
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shear = np.zeros((n, 2, 2))
        shear[:, 0, 0] = shear[:, 1, 1] = 1.0
        shear[:, 0, 1] = rng.normal(0.0, 0.1, n)
        affine = rot @ shear * rng.uniform(0.85, 1.1, (n, 1, 2))  # columns scaled: A = R S diag(scale)
        shift = rng.normal(0.0, 0.035, (n, 1, 2))
        widths = rng.uniform(0.055, 0.1, n) * big.min()
        strokes = []
        for points in template:
            p = points[None] + rng.normal(0.0, 0.02, (n, *points.shape))
            p = (p - 0.5) @ affine.transpose(0, 2, 1) + 0.5 + shift
            strokes.append((p * big).tolist())
        images = np.empty((n, 1, h, w), dtype=np.uint8)
        size = (int(big[0]), int(big[1]))
        for j in range(n):
            canvas = Image.new("L", size, 0)
            draw = ImageDraw.Draw(canvas)
            width, r = max(1, round(widths[j])), widths[j] / 2
            for stroke in strokes:
                xy = stroke[j]
                draw.line([tuple(q) for q in xy], fill=255, width=width)
                for x, y in (xy[0], xy[-1]):  # round pen ends
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
            images[j, 0] = np.asarray(canvas.reduce(SUPERSAMPLE))
        return torch.from_numpy(images)


def _bezier(ctrl: np.ndarray) -> np.ndarray:
    t = np.linspace(0.0, 1.0, BEZIER_POINTS)[:, None]
    a, b, c, d = ctrl
    return (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d


def glyph_classes(n_classes: int = 2000, instances: int = 20, *, image_size: Any = 28, seed: int = 0,
                  max_strokes: int = 4) -> ImageClasses:  # fmt: skip
    """``n_classes`` generated glyph classes of ``instances`` images each (nothing is drawn until used).

    The default, 2000 classes x 20 instances at 28x28, mirrors Omniglot's shape (1623 x 20).

    Parameters
    ----------
    n_classes, instances : int
        Classes (>= 1) and images per class (>= 1).
    image_size : int or (int, int)
        Side, or (height, width), of the rendered images.
    seed : int
        Class ``c`` (its strokes and instances) depends only on ``(seed, c)``.
    max_strokes : int
        Strokes of a class's pen drawing: one to ``max_strokes``.

    Returns
    -------
    ImageClasses
        One channel ``uint8`` images, bright strokes on black.
    """
    n_classes = check_int("n_classes", n_classes, 1)
    instances = check_int("instances", instances, 1)
    size = check_size("image_size", image_size, allow_none=False)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    max_strokes = check_int("max_strokes", max_strokes, 1)
    store = GlyphStore(instances, size, seed, max_strokes)
    names = [f"glyph{c:05d}" for c in range(n_classes)]
    return ImageClasses(store, names, description=f"generated glyphs (seed={seed})")


def digit_classes(image_size: Any = 28) -> ImageClasses:
    """scikit-learn's 8x8 digits as ten classes, upsampled (bilinear) to ``image_size``; bright ink on black.

    Parameters
    ----------
    image_size : int or (int, int)
        Side, or (height, width), of the returned images.

    Returns
    -------
    ImageClasses
        Classes ``0`` .. ``9`` of one-channel ``uint8`` images.
    """
    from sklearn.datasets import load_digits

    size = check_size("image_size", image_size, allow_none=False)
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    if size != (8, 8):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(digits.target)
    tensors = [x[labels == k] for k in range(10)]
    return ImageClasses.from_tensors(tensors, names=[str(k) for k in range(10)], description="scikit-learn digits")
