"""Compressive learning: bounded feature maps, mergeable mean sketches, and differential privacy.

This layer holds the data structure (:class:`Sketch`), the per-sample maps (the learned
:class:`SketchNetwork` and the randomized baselines), chunked sketching of streams and files, and
the privacy mechanisms.  Neighbouring relation for every privacy statement: replace-one (same
``n``, one sample changed; ``n`` public).
"""

from metalab.compressive.bounds import MAX_SKETCH_SIZE, FeatureBound, as_samples
from metalab.compressive.feature_maps import (
    ClippedIdentity,
    ConcatFeatures,
    FeatureMap,
    ProjectedSecondMoments,
    RandomFourierFeatures,
    RandomQuadraticFeatures,
    SketchNetwork,
    median_scale,
)
from metalab.compressive.privacy import (
    Gaussian,
    Laplace,
    PrivacyGuarantee,
    analytic_gaussian_sigma,
    calibrate,
    classical_gaussian_sigma,
    gaussian_delta,
    gaussian_epsilon,
    laplace_epsilon,
    laplace_scale,
    mean_sensitivity,
    privacy_of,
)
from metalab.compressive.sketch import Sketch, merge_sketches
from metalab.compressive.streams import sketch_csv, sketch_stream

__all__ = [
    "MAX_SKETCH_SIZE",
    "ClippedIdentity",
    "ConcatFeatures",
    "FeatureBound",
    "FeatureMap",
    "Gaussian",
    "Laplace",
    "PrivacyGuarantee",
    "ProjectedSecondMoments",
    "RandomFourierFeatures",
    "RandomQuadraticFeatures",
    "Sketch",
    "SketchNetwork",
    "analytic_gaussian_sigma",
    "as_samples",
    "calibrate",
    "classical_gaussian_sigma",
    "gaussian_delta",
    "gaussian_epsilon",
    "laplace_epsilon",
    "laplace_scale",
    "mean_sensitivity",
    "median_scale",
    "merge_sketches",
    "privacy_of",
    "sketch_csv",
    "sketch_stream",
]
