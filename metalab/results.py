"""The stored paper-scale runs that ship with the package (``metalab reproduce`` wrote them).

``metalab/results_data`` is a link to the checkout's ``results/`` folder, listed in the package data, so
an installed package carries the same files: one folder per paper with ``records.csv`` (or
``records.csv.gz``), ``config.json``, ``provenance.json`` and the figures as PNG.

>>> "meta_sp" in available()
True
>>> run = load("meta_sp")
>>> run.paper, "git_commit" in run.provenance, {"part", "method", "step", "unit"} <= set(run.frame.columns)
('meta_sp', True, True)
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from metalab.core import Config
from metalab.experiments import get_experiment

#: files every stored run has besides its records
REQUIRED = ("config.json", "provenance.json")


def folder() -> Path:
    """The folder of the stored runs inside the installed package."""
    return Path(str(resources.files("metalab").joinpath("results_data")))


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """One paper's stored run: its records, the config that produced them and their provenance."""

    paper: str
    frame: pd.DataFrame
    config: dict[str, Any]
    provenance: dict[str, Any]
    path: Path

    def config_object(self) -> Config:
        """The stored config as the experiment's validated Config."""
        return get_experiment(self.paper).config(**self.config)

    def figures(self) -> list[Path]:
        """The stored figures (PNG), by name."""
        return sorted(self.path.glob("*.png"))

    def describe(self) -> str:
        """Where the run came from, in one line: command, commit, machine, versions, time."""
        p = self.provenance
        commit = (p.get("git_commit") or "unknown")[:10] + (" (uncommitted changes)" if p.get("git_dirty") else "")
        threads = self.config.get("threads") or p["torch_threads"]  # the units compute with the config's threads
        machine = f"{p['cpu']}, {threads} torch thread(s), device {p['device']}"
        minutes = f"{p['wall_seconds'] / 60:.0f} min wall" + (
            f", {p['cpu_seconds'] / 60:.0f} min CPU" if "cpu_seconds" in p else ""
        )
        return (
            f"`metalab reproduce {self.paper}` at commit {commit} · {machine} · torch {p['torch']}, Python "
            f"{p['python']} · {minutes}, finished {p['finished_utc']}"
        )


def available() -> list[str]:
    """The papers with a stored run (a folder holding ``provenance.json``), sorted."""
    root = folder()
    return sorted(p.name for p in root.iterdir() if (p / "provenance.json").exists()) if root.is_dir() else []


def _records_path(path: Path) -> Path:
    for name in ("records.csv.gz", "records.csv"):
        if (path / name).exists():
            return path / name
    raise FileNotFoundError(f"{path} holds no records.csv or records.csv.gz: the stored run is incomplete")


def _read(path: Path, read) -> Any:
    try:
        return read(path)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt ({type(error).__name__}: {error}): run metalab reproduce again") from None


def load(paper: str) -> StoredRun:
    """The stored run of ``paper``.

    Raises
    ------
    FileNotFoundError
        When the package holds no (finished) run for it; the message names the folder and what is stored.
    ValueError
        When one of its files cannot be read (the message names the file).
    """
    path = folder() / paper
    missing = [name for name in REQUIRED if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"no stored run of {paper!r} in {path} (missing {', '.join(missing)}); stored: "
            f"{', '.join(available()) or 'none'}. Write one with: metalab reproduce {paper}"
        )
    config = _read(path / "config.json", lambda p: json.loads(p.read_text()))["config"]
    provenance = _read(path / "provenance.json", lambda p: json.loads(p.read_text()))
    frame = _read(_records_path(path), pd.read_csv)
    return StoredRun(paper, frame, config, provenance, path)
