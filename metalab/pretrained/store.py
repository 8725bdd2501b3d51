"""Pretrained models stored in the package: ``<name>.safetensors`` (the tensors, no pickle) beside
``<name>.json`` (the config that built them, the SHA-256 of the tensor file, the format, metalab and
torch versions, a training summary, the stored evaluation and the command that regenerates them).

:func:`load` checks, in order, that both files exist, that the tensor file's SHA-256 is the recorded
one, that the format version is this code's, and that the tensors' names and shapes are those of the
network the config builds; each failure raises :class:`PretrainedError` naming the file and the exact
command that regenerates it.  Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import metalab
from metalab.nets import MLP, Conv4

#: the layout of the ``.json`` files this code reads and writes
FORMAT_VERSION = 1
#: where the package's models live
MODELS_DIR = Path(__file__).resolve().parent / "models"


class PretrainedError(RuntimeError):
    """A stored model that cannot be loaded; the message names the file and how to regenerate it."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A stored model's description: ``file`` is its ``.safetensors`` path, ``size`` its bytes, ``sha256``
    the digest recorded when it was saved; ``config`` builds its network (``config["architecture"]``)."""

    name: str
    description: str
    paper: str
    config: dict[str, Any]
    file: Path
    size: int
    sha256: str
    training: dict[str, Any]
    evaluation: dict[str, Any]
    command: str
    format_version: int
    metalab_version: str
    torch_version: str


def _paths(name: str, directory: Path | None) -> tuple[Path, Path]:
    directory = MODELS_DIR if directory is None else Path(directory)
    return directory / f"{name}.safetensors", directory / f"{name}.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def available(directory: Path | None = None) -> list[ModelInfo]:
    """Every stored model, sorted by name."""
    directory = MODELS_DIR if directory is None else Path(directory)
    return [info(path.stem, directory) for path in sorted(directory.glob("*.json"))]


def info(name: str, directory: Path | None = None) -> ModelInfo:
    """The stored description of ``name`` (its ``.json``), without reading the tensors."""
    tensors, meta = _paths(name, directory)
    if not meta.exists():
        names = sorted(p.stem for p in meta.parent.glob("*.json"))
        raise PretrainedError(
            f"no pretrained model {name!r}: {meta} does not exist (available: {', '.join(names) or 'none'}; "
            "`metalab reproduce` trains and stores them)"
        )
    record = json.loads(meta.read_text())
    fields = {f.name for f in dataclasses.fields(ModelInfo)} - {"name", "file", "size"}
    missing = sorted(fields - set(record))
    if missing:
        raise PretrainedError(f"{meta} lacks {', '.join(missing)}: regenerate it with `{record.get('command', '?')}`")
    size = tensors.stat().st_size if tensors.exists() else 0
    return ModelInfo(name=name, file=tensors, size=size, **{k: record[k] for k in fields})


def load_tensors(name: str, directory: Path | None = None) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """The stored tensors of ``name`` after the file, checksum and format checks (see the module docstring)."""
    model = info(name, directory)
    regenerate = f"regenerate it with `{model.command}`"
    if model.format_version != FORMAT_VERSION:
        raise PretrainedError(
            f"{model.file.with_suffix('.json')} has format version {model.format_version}, this metalab "
            f"({metalab.__version__}) reads version {FORMAT_VERSION}: {regenerate}"
        )
    if not model.file.exists():
        raise PretrainedError(f"{model.file} is missing: {regenerate}")
    digest = _sha256(model.file)
    if digest != model.sha256:
        raise PretrainedError(
            f"{model.file} is corrupt: its SHA-256 is {digest[:12]}..., the recorded one {model.sha256[:12]}...; "
            f"{regenerate}"
        )
    return load_file(model.file), model


def build(config: Mapping[str, Any]) -> nn.Module | None:
    """The network a stored config describes: ``"mlp"`` (sizes, activation), ``"conv4"`` (in_channels,
    hidden, image_size, out_features) or ``"compressive"`` (a Sketch- and Query-Network: task, d,
    task_options, sketch_size, sketch_hidden, sketch_activation, width, blocks); None for others."""
    architecture = config.get("architecture")
    if architecture == "mlp":
        return MLP(list(config["sizes"]), activation=config["activation"])
    if architecture == "conv4":
        keys = ("in_channels", "hidden", "image_size", "out_features")
        return Conv4(**{k: config[k] for k in keys if k in config})
    if architecture == "compressive":
        from metalab.compressive.query import CompressiveModel, make_task

        task = make_task(config["task"], config["d"], **config.get("task_options", {}))
        keys = ("sketch_hidden", "sketch_activation", "width", "blocks")
        return CompressiveModel(task, config["sketch_size"], device="cpu", **{k: config[k] for k in keys})
    return None


def load(name: str, directory: Path | None = None) -> tuple[nn.Module | dict[str, torch.Tensor], ModelInfo]:
    """``(model, info)``: a ready ``nn.Module`` with the stored weights when the config names an
    architecture :func:`build` knows (the raw tensors otherwise; :func:`load_tensors` always gives them).

    Raises
    ------
    PretrainedError
        Missing file, checksum mismatch, unknown format version, or tensors whose names or shapes do not
        fit the network the config builds; the message names the file and the regenerating command.
    """
    tensors, model_info = load_tensors(name, directory)
    net = build(model_info.config)
    if net is None:
        return tensors, model_info
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != stored:
        wrong = sorted(k for k in expected.keys() | stored.keys() if expected.get(k) != stored.get(k))
        details = ", ".join(f"{k}: stored {stored.get(k)}, config {expected.get(k)}" for k in wrong[:4])
        raise PretrainedError(
            f"{model_info.file} does not fit its config ({details}): regenerate it with `{model_info.command}`"
        )
    net.load_state_dict(tensors)
    return net.eval(), model_info


def save(
    name: str,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    description: str,
    paper: str,
    *,
    training: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    command: str,
    directory: Path | None = None,
) -> ModelInfo:
    """Store ``tensors`` as ``<name>.safetensors`` and the rest as ``<name>.json`` (JSON-serialisable
    ``config``, ``training`` and ``evaluation``); returns the stored :class:`ModelInfo`."""
    path, meta = _paths(name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)
    record = {
        "description": description,
        "paper": paper,
        "config": dict(config),
        "sha256": _sha256(path),
        "training": dict(training),
        "evaluation": dict(evaluation),
        "command": command,
        "format_version": FORMAT_VERSION,
        "metalab_version": metalab.__version__,
        "torch_version": torch.__version__,
    }
    meta.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return info(name, directory)
