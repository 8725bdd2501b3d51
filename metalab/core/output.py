"""A run's output folder that loses nothing and leaves no corrupt file.

Records are appended to ``records.jsonl`` as they stream (one JSON object per line, flushed per record),
so an interrupted run keeps every finished record; the final files (``records.csv``, ``records.json``,
one PNG per figure) are written to a temporary file and renamed into place, so a reader sees the old
file or the whole new one, never half of one.  A failed append (a full disk) cuts the stream back to its
last whole line.

A resumed run (``resume=True``) keeps the stream of an interrupted one and appends to it; a partial
last line (a write cut by a kill) is dropped first, so :func:`read_stream` sees whole lines only.
Besides records, a stream may hold other JSON lines (``write_line``), e.g. the marks of finished units
that ``metalab reproduce`` resumes from.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from metalab.core.records import Record

STREAM = "records.jsonl"
#: files a run writes; a folder holding any of them holds a run
RUN_FILES = (STREAM, "records.csv", "records.csv.gz", "records.json")


def json_safe(value: Any) -> Any:
    """NaN and infinities as JSON null (strict JSON has no literal for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it into place;
    on any error the temporary file is removed and ``path`` is untouched."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would keep a shipped or shared result from its readers
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def read_stream(path: Path) -> list[dict[str, Any]]:
    """The whole JSON lines of the stream file ``path`` (none when it is missing); a partial last line,
    without its newline, is left out."""
    if not path.exists():
        return []
    whole = path.read_bytes().rpartition(b"\n")[0]
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


def _cut_to_last_line(path: Path) -> None:
    """Truncate ``path`` after its last newline (a line cut short by a kill is dropped)."""
    data = path.read_bytes()
    whole = data.rpartition(b"\n")[0] + b"\n" if b"\n" in data else b""
    if len(whole) != len(data):
        with path.open("r+b") as file:
            file.truncate(len(whole))


class RunFolder:
    """The output folder of one ``metalab run``.

    Parameters
    ----------
    path:
        The folder; created when missing.  One that already holds a run is refused (FileExistsError)
        unless ``force``, which first removes that run's files (records and PNG figures).
    force:
        Overwrite an earlier run in ``path``.
    resume:
        Continue the stream of an interrupted run in ``path`` (its partial last line dropped).
    """

    def __init__(self, path: Path, *, force: bool = False, resume: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"--out {self.path} is a file, not a folder")
        self.path.mkdir(parents=True, exist_ok=True)
        earlier = [self.path / name for name in RUN_FILES if (self.path / name).exists()]
        if earlier and not (force or resume):
            raise FileExistsError(
                f"--out {self.path} already holds a run ({earlier[0].name}): choose another folder or add --force"
            )
        if force:
            for stale in [*earlier, *self.path.glob("*.png")]:
                stale.unlink()
        if resume and (self.path / STREAM).exists():
            _cut_to_last_line(self.path / STREAM)
        self.count = 0
        self._stream = (self.path / STREAM).open("ab")
        self._good_bytes = self._stream.tell()

    def append(self, record: Record, **tags: Any) -> None:
        """Append one record (after the ``tags`` columns) as a JSON line and flush it."""
        self.write_line({**tags, **record.as_row(), "progress": record.progress})
        self.count += 1

    def write_line(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` as one JSON line and flush it; a failed write is cut back to the last line."""
        line = (json.dumps({k: json_safe(v) for k, v in entry.items()}, default=str) + "\n").encode()
        try:
            self._stream.write(line)
            self._stream.flush()
        except OSError:
            self._stream.truncate(self._good_bytes)
            raise
        self._good_bytes += len(line)

    def finish(self, files: Iterable[tuple[str, Callable[[IO[bytes]], None]]]) -> list[str]:
        """Write the final ``(name, write)`` files atomically, then drop the stream, whose records they
        hold; returns the names of the files now in the folder."""
        self._stream.close()
        for name, write in files:
            atomic_write(self.path / name, write)
        (self.path / STREAM).unlink()
        return sorted(p.name for p in self.path.iterdir() if not p.name.startswith("."))

    def close(self) -> None:
        self._stream.close()
