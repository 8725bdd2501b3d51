"""Compressive learning: bounded feature maps, mergeable mean sketches, and differential privacy.

This layer holds the data structure (:class:`Sketch`), the per-sample maps (the learned
:class:`SketchNetwork` and the randomized baselines), chunked sketching of streams and files, and
the privacy mechanisms.  Neighbouring relation for every privacy statement: replace-one (same
``n``, one sample changed; ``n`` public).
"""

from metalab.compressive.bounds import MAX_SKETCH_SIZE, FeatureBound, as_samples
from metalab.compressive.decoders import (
    MEDIAN_FACTOR,
    append_ones,
    ckm,
    compressive_pca,
    compressive_ridge,
    rff_sketch_for_kmeans,
    second_moment,
)
from metalab.compressive.distributed import local_cluster, sketch_dask
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
from metalab.compressive.references import (
    autoencoder,
    autoencoder_error,
    autoencoder_forward,
    autoencoder_shapes,
    kmeans,
    kmeans_sse,
    pca,
    pca_error,
    ridge,
    ridge_loss,
)
from metalab.compressive.sketch import Sketch, merge_sketches
from metalab.compressive.streams import sketch_csv, sketch_stream

__all__ = [
    "MAX_SKETCH_SIZE",
    "MEDIAN_FACTOR",
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
    "append_ones",
    "as_samples",
    "autoencoder",
    "autoencoder_error",
    "autoencoder_forward",
    "autoencoder_shapes",
    "calibrate",
    "ckm",
    "classical_gaussian_sigma",
    "compressive_pca",
    "compressive_ridge",
    "gaussian_delta",
    "gaussian_epsilon",
    "kmeans",
    "kmeans_sse",
    "laplace_epsilon",
    "laplace_scale",
    "local_cluster",
    "mean_sensitivity",
    "median_scale",
    "merge_sketches",
    "pca",
    "pca_error",
    "privacy_of",
    "rff_sketch_for_kmeans",
    "ridge",
    "ridge_loss",
    "second_moment",
    "sketch_dask",
    "sketch_csv",
    "sketch_stream",
]
