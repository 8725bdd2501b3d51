"""Pretrained models that let a lab show its paper's point at once, stored in the package (safetensors
and JSON, no pickle, no network).

>>> from metalab import pretrained
>>> [m.name for m in pretrained.available()]            # doctest: +SKIP
>>> net, info = pretrained.load("sinusoid_maml_k10")    # doctest: +SKIP

``python -m metalab.pretrained.train sinusoid`` (or ``metalab reproduce``) regenerates them; each
model's ``info.command`` is the exact command for that one.
"""

from metalab.pretrained.store import (
    FORMAT_VERSION,
    MODELS_DIR,
    ModelInfo,
    PretrainedError,
    available,
    build,
    info,
    load,
    load_tensors,
    save,
)

__all__ = [
    "FORMAT_VERSION",
    "MODELS_DIR",
    "ModelInfo",
    "PretrainedError",
    "available",
    "build",
    "info",
    "load",
    "load_tensors",
    "save",
]
