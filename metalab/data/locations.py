"""Where the real-data loaders look when no path is given, and what ``metalab data`` reports.

The search path, in order:

1. ``$METALAB_DATA`` (when set),
2. ``./data`` (relative to the working directory),
3. ``~/.cache/metalab``,

each folder itself and then its data set's sub-folders (e.g. ``omniglot/``).  An explicit ``path``
replaces the search path: only it (and its sub-folders) is looked at.  :func:`find` returns the first
folder holding a data set's files; :data:`DATASETS` says which files those are, where to download
them, and which labs use them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

#: the environment variable that comes first on the search path
ENV_VAR = "METALAB_DATA"


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A real data set: the sub-folders it may sit in, the file patterns that mark a folder holding it, the
    files a user downloads (``expected``) and from where (``source``), and ``uses``: for each lab or part
    that reads it, (who, what it uses when the data are found, what it uses otherwise)."""

    name: str
    title: str
    subdirs: tuple[str, ...]
    patterns: tuple[str, ...]
    expected: str
    source: str
    uses: tuple[tuple[str, str, str], ...]


DATASETS = {
    "omniglot": DataSet(
        name="omniglot",
        title="Omniglot (Lake et al. 2015)",
        subdirs=("omniglot", "Omniglot"),
        patterns=("images_background*", "images_evaluation*", "all_runs*"),
        expected="images_background.zip and images_evaluation.zip (or images_background_small1/2.zip), "
        "all_runs.zip, or their extracted folders",
        source="https://github.com/brendenlake/omniglot (python/*.zip), or metalab.data.omniglot.download_omniglot",
        uses=(
            ("memory_reduced, dataset='auto'", "Omniglot", "the generated glyphs"),
            ("memory_reduced, dataset='omniglot'", "Omniglot", "nothing: the run stops with FileNotFoundError"),
            ("metalab.data.evaluate_one_shot_runs", "the 20 one-shot runs", "nothing: FileNotFoundError"),
        ),
    ),
    "beijing_air_quality": DataSet(
        name="beijing_air_quality",
        title="Beijing multi-site air quality (UCI 501)",
        subdirs=("beijing_air_quality",),
        patterns=("PRSA_Data_*.csv.gz",),
        expected="PRSA_Data_<station>_20130301-20170228.csv.gz (12 stations)",
        source="https://archive.ics.uci.edu/dataset/501 (gzip each CSV)",
        uses=(("meta_sp, part 'air_quality'", "the 12 stations' daily tasks", "nothing: the part is skipped"),),
    ),
}


def search_roots() -> list[pathlib.Path]:
    """The search path: ``$METALAB_DATA`` (when set), ``./data``, ``~/.cache/metalab``."""
    env = os.environ.get(ENV_VAR)
    roots = [pathlib.Path(env).expanduser()] if env else []
    return [*roots, pathlib.Path.cwd() / "data", pathlib.Path.home() / ".cache" / "metalab"]


def candidate_dirs(path: str | os.PathLike | None, subdirs: Sequence[str]) -> list[pathlib.Path]:
    """Folders to look in, in order: ``path`` and its ``subdirs`` when given, else each root of
    :func:`search_roots` followed by its ``subdirs``."""
    roots = [pathlib.Path(path).expanduser()] if path is not None else search_roots()
    return [folder for root in roots for folder in (root, *(root / s for s in subdirs))]


def _holds(folder: pathlib.Path, patterns: Sequence[str]) -> bool:
    return folder.is_dir() and any(any(folder.glob(p)) for p in patterns)


def find(dataset: str, path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The first folder of :func:`candidate_dirs` that holds ``dataset``'s files, or None.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     folder = pathlib.Path(root, "omniglot")
    ...     folder.mkdir()
    ...     folder.joinpath("all_runs.zip").touch()
    ...     found = find("omniglot", root) == folder, find("beijing_air_quality", root)
    >>> found
    (True, None)
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not allowed: one of {', '.join(map(repr, DATASETS))}")
    spec = DATASETS[dataset]
    return next((d for d in candidate_dirs(path, spec.subdirs) if _holds(d, spec.patterns)), None)


def report() -> str:
    """What ``metalab data`` prints: the search path, then per data set where it was found (or the files
    to download and from where) and what each lab that reads it would use."""
    lines = ["Search path (first match wins; an explicit path or data_path replaces it):"]
    for root in search_roots():
        lines.append(f"  {root}{'' if root.is_dir() else '  (absent)'}")
    for spec in DATASETS.values():
        folder = find(spec.name)
        lines += ["", f"{spec.name}: {spec.title}"]
        if folder is None:
            lines += [
                "  not found",
                f"  expected files: {spec.expected}, in a root above or its {'/ or '.join(spec.subdirs)}/",
                f"  download: {spec.source}",
            ]
        else:
            lines.append(f"  found in {folder}")
        lines += [f"  {who} would use {found if folder else missing}" for who, found, missing in spec.uses]
    return "\n".join(lines)
