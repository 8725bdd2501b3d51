"""``metalab reproduce``: run a paper's ``paper`` preset into ``results/<paper>/`` with its provenance,
resuming an interrupted run where it stopped.

A run is the experiment's units in order, each named ``<part>/<i>`` (its position in its part).  Before
a unit runs, the global seeds are set from the config's seed and the unit's name
(:func:`unit_seed`), so a unit's records do not depend on which units ran before it in the same
process: that is what makes skipping finished units exact.  The stream ``records.jsonl``
(:class:`~metalab.core.output.RunFolder`) holds every record tagged with its unit and, after a unit's
last record, a line ``{"done": unit, "seconds": s}``.  Resuming keeps the records of the units marked
done, drops the rest (a unit cut short reruns whole) and skips the done units.  ``config.json``, written
before the first unit, holds the config and its fingerprint (SHA-256 of the experiment name and the
config); a different config is refused unless ``restart``.

A finished run leaves ``records.csv`` (``records.csv.gz`` above :data:`GZIP_ABOVE` bytes) with a
``unit`` column, ``config.json``, ``provenance.json`` (code version, machine, device, start, end,
compute seconds, wall and CPU) and one PNG per figure.  :func:`drift_slice` names the units a drift check
re-runs (:func:`rerun`) and :func:`compare` compares them with the stored records, so a stored result
cannot drift from the code unnoticed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

import metalab
from metalab.core import Config, Record, resolve_device, seed_everything
from metalab.core.output import STREAM, RunFolder, atomic_write, read_stream
from metalab.core.provenance import git_state, machine, utc_now
from metalab.core.records import Unit
from metalab.experiments import get_experiment
from metalab.experiments.base import DRIFT_ATOL, DRIFT_RTOL, DriftSlice, Experiment

#: records CSV larger than this (bytes) is stored gzip-compressed
GZIP_ABOVE = 1_000_000
#: files of a stored run besides the figures, removed by a restart
RUN_FILES = (STREAM, "records.csv", "records.csv.gz", "config.json", "provenance.json")


@dataclasses.dataclass(frozen=True)
class NamedUnit:
    """A unit of work with its name ``<part>/<i>`` (the i-th unit of the part)."""

    name: str
    unit: Unit


def plan(experiment: Experiment, config: Config, context: Any) -> list[NamedUnit]:
    """The run's units in the order :meth:`Experiment.run` runs them, each with its name."""
    return [
        NamedUnit(f"{part.name}/{i}", unit)
        for part in experiment.parts
        if part.name in config.parts
        for i, unit in enumerate(part.units(config, context))
    ]


def unit_seed(config: Config, name: str) -> int:
    """The seed of unit ``name``: CRC-32 of ``"<config.seed>/<name>"`` (independent of the units before it)."""
    return zlib.crc32(f"{config.seed}/{name}".encode())


def run_unit(named: NamedUnit, config: Config) -> Iterator[Record]:
    """The unit's records, after seeding Python, NumPy and torch with :func:`unit_seed`."""
    seed_everything(unit_seed(config, named.name))
    yield from named.unit.work()


def fingerprint(experiment: Experiment, config: Config) -> str:
    """SHA-256 (hex) of the experiment name and the config's JSON: equal fingerprints, same run."""
    return hashlib.sha256(f"{experiment.name}\n{config.to_json()}".encode()).hexdigest()


def paper_config(experiment: Experiment, device: str = "auto") -> Config:
    """The experiment's ``paper`` preset on ``device`` (for configs with a ``device`` field)."""
    overrides = {"device": device} if "device" in experiment.config.field_names() else {}
    return experiment.config.preset("paper", **overrides)


def default_results_folder() -> Path:
    """The checkout's ``results/`` folder (beside ``pyproject.toml``); an installed package has none.

    Raises
    ------
    ValueError
        Outside a writable checkout: the message asks for ``--out``.
    """
    root = Path(metalab.__file__).resolve().parent.parent
    if (root / "pyproject.toml").exists() and os.access(root, os.W_OK):
        return root / "results"
    raise ValueError(f"{root} is not a writable metalab checkout: pass --out DIR to say where the results go")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not readable JSON ({error}): remove it or pass --restart") from None


def _prepare(folder: Path, experiment: Experiment, config: Config, restart: bool) -> bool:
    """Make ``folder`` ready for ``config``: True when it already holds the finished run.

    Raises
    ------
    ValueError
        When it holds a run of another config and not ``restart`` (the message names the fields).
    """
    folder.mkdir(parents=True, exist_ok=True)
    stored = folder / "config.json"
    if restart:
        for stale in [*(folder / name for name in RUN_FILES), *folder.glob("*.png")]:
            stale.unlink(missing_ok=True)
    elif stored.exists():
        earlier = _read_json(stored)
        if earlier.get("fingerprint") != fingerprint(experiment, config):
            differing = sorted(
                name for name, value in json.loads(config.to_json()).items() if earlier["config"].get(name) != value
            )
            raise ValueError(
                f"{folder} holds a run of {earlier.get('experiment')} with another config (differing: "
                f"{', '.join(differing) or 'the experiment'}): pass --restart to discard it, or --out another folder"
            )
        return (folder / "provenance.json").exists()
    document = {"experiment": experiment.name, "fingerprint": fingerprint(experiment, config)}
    document["config"] = json.loads(config.to_json())
    atomic_write(stored, lambda f: f.write(json.dumps(document, indent=1).encode()))
    return False


def _kept_lines(folder: Path) -> list[dict[str, Any]]:
    """The stream's lines that survive a resume: session lines, and the records and marks of done units;
    the stream is rewritten to hold just these."""
    lines = read_stream(folder / STREAM)
    done = {line["done"] for line in lines if "done" in line}
    kept = [line for line in lines if line.get("unit", line.get("done")) in done or "session" in line]
    if len(kept) != len(lines) and kept:
        body = "".join(json.dumps(line) + "\n" for line in kept).encode()
        atomic_write(folder / STREAM, lambda f: f.write(body))
    elif not kept:
        (folder / STREAM).unlink(missing_ok=True)
    return kept


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{rest:02d}s"


def _records_file(frame: pd.DataFrame) -> tuple[str, Callable[[IO[bytes]], None]]:
    text = frame.to_csv(index=False).encode()
    if len(text) <= GZIP_ABOVE:
        return "records.csv", lambda f: f.write(text)
    buffer = io.BytesIO()
    frame.to_csv(buffer, index=False, compression={"method": "gzip", "mtime": 0})
    return "records.csv.gz", lambda f: f.write(buffer.getvalue())


def _provenance(
    experiment: Experiment, config: Config, device, lines: list[dict[str, Any]], frame: pd.DataFrame
) -> dict:
    """What produced the run: the code each session started from (``git_commit`` of the first, and every
    session's), the machine, the torch threads the units computed with (the config's ``threads`` when it has
    one), the times and the counts."""
    sessions = [line for line in lines if "session" in line]
    done = [line for line in lines if "done" in line]
    started = {key: sessions[0][key] for key in ("git_commit", "git_dirty") if key in sessions[0]}
    threads = getattr(config, "threads", None)
    return {
        "experiment": experiment.name,
        **machine(device),
        **started,
        "session_commits": [line.get("git_commit") for line in sessions],
        **({"torch_threads": threads} if threads else {}),
        "started_utc": sessions[0]["session"],
        "finished_utc": utc_now(),
        "sessions": len(sessions),
        "wall_seconds": sum(line["context_seconds"] for line in sessions) + sum(line["seconds"] for line in done),
        # the process's CPU time in the units: a dedicated core's wall time when torch runs one thread
        "cpu_seconds": sum(line.get("cpu_seconds", math.nan) for line in done),
        "units": len(done),
        "records": len(frame),
    }


def reproduce(
    experiment: Experiment,
    folder: Path,
    *,
    config: Config | None = None,
    restart: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Run ``config`` (default: the ``paper`` preset) into ``folder``, resuming what an interrupted run
    left there; returns the folder.  A KeyboardInterrupt keeps every finished unit for the next call.

    Raises
    ------
    ValueError
        When ``folder`` holds a run of another config and not ``restart``.
    """
    config = config if config is not None else paper_config(experiment)
    folder = Path(folder)
    if _prepare(folder, experiment, config, restart):
        log(f"{experiment.name}: {folder} already holds the finished run of this config (pass --restart to redo it)")
        return folder
    kept = _kept_lines(folder)
    device = resolve_device(getattr(config, "device", "cpu"))
    stream = RunFolder(folder, resume=True)
    try:
        started = time.perf_counter()
        seed_everything(config.seed)
        context = experiment.context(config)
        code = {f"git_{key}": value for key, value in git_state(Path(metalab.__file__).parent).items()}
        session = {"session": utc_now(), "device": str(device), **code}
        session["context_seconds"] = time.perf_counter() - started
        stream.write_line(session)
        lines = [*kept, session]
        _run_units(plan(experiment, config, context), config, stream, lines, log)
    except BaseException as error:
        stream.close()
        if isinstance(error, KeyboardInterrupt):
            log(f"{experiment.name}: interrupted; the finished units are kept in {folder}: run again to resume")
        raise
    records = [{k: v for k, v in line.items() if k != "progress"} for line in lines if "part" in line]
    frame = pd.DataFrame(records)
    files = [_records_file(frame)]
    for name, figure in experiment.figures(frame).items():
        files.append((f"{name}.png", lambda f, figure=figure: figure.savefig(f, format="png", dpi=100)))
    provenance = _provenance(experiment, config, device, lines, frame)  # written last: it marks the run finished
    files.append(("provenance.json", lambda f: f.write(json.dumps(provenance, indent=1).encode())))
    written = stream.finish(files)
    log(f"{experiment.name}: {len(frame)} records, {provenance['wall_seconds']:.0f} s; wrote {', '.join(written)}")
    return folder


def _run_units(units: Sequence[NamedUnit], config: Config, stream: RunFolder, lines: list, log) -> None:
    """Run the units not marked done in ``lines``, appending their records and marks to ``stream`` and
    ``lines``; one progress line per unit with the time left (this session's seconds per unit weight)."""
    done = {line["done"] for line in lines if "done" in line}
    todo = [named for named in units if named.name not in done]
    total = sum(named.unit.weight for named in units)
    left = sum(named.unit.weight for named in todo)
    if len(todo) < len(units):
        log(f"resuming: {len(units) - len(todo)} of {len(units)} units already done, {len(todo)} to run")
    spent, weight_done = 0.0, 0.0
    for count, named in enumerate(todo, 1):
        started, cpu = time.perf_counter(), time.process_time()
        for record in run_unit(named, config):
            row = {"unit": named.name, **record.as_row(), "progress": record.progress}
            stream.append(record, unit=named.name)
            lines.append(row)
        seconds = time.perf_counter() - started
        mark = {"done": named.name, "seconds": seconds, "cpu_seconds": time.process_time() - cpu, "finished": utc_now()}
        stream.write_line(mark)
        lines.append(mark)
        spent, weight_done, left = spent + seconds, weight_done + named.unit.weight, left - named.unit.weight
        share = 1 - left / total
        log(
            f"[{count}/{len(todo)}] {named.name} {seconds:.1f} s; {share:.0%} done, ETA {_eta(spent / weight_done * left)}"
        )


def reproduce_all(names: Sequence[str], out: Path | None, *, device: str, restart: bool, log=print) -> list[Path]:
    """:func:`reproduce` each experiment in ``names`` into ``out/<name>`` (default: the checkout's results/)."""
    root = Path(out) if out is not None else default_results_folder()
    folders = []
    for name in names:
        experiment = get_experiment(name)
        log(f"{name}: paper preset into {root / name}")
        if experiment.paper_scale:
            log(experiment.paper_scale)
        folders.append(reproduce(experiment, root / name, config=paper_config(experiment, device), restart=restart))
    return folders


# --------------------------------------------------------------------------------------------
# drift: re-run a slice of a stored run and compare


def drift_slice(experiment: Experiment, config: Config) -> DriftSlice:
    """What a drift check re-runs of the stored run of ``config``: the experiment's ``drift_slice(config)``
    when it declares one, else the first unit of every part at the stored config."""
    if experiment.drift_slice is not None:
        return experiment.drift_slice(config)
    return DriftSlice(config, tuple(f"{part}/0" for part in config.parts))


def rerun(experiment: Experiment, config: Config, names: Sequence[str]) -> pd.DataFrame:
    """The records of the named units of ``config``'s run (computed afresh), with the ``unit`` column."""
    seed_everything(config.seed)
    context = experiment.context(config)
    chosen = [named for named in plan(experiment, config, context) if named.name in set(names)]
    rows = [{"unit": named.name, **record.as_row()} for named in chosen for record in run_unit(named, config)]
    return pd.DataFrame(rows)


def compare(
    stored: pd.DataFrame,
    fresh: pd.DataFrame,
    skip: Sequence[str] = (),
    rtol: float = DRIFT_RTOL,
    atol: float = DRIFT_ATOL,
    prefix: bool = False,
) -> list[str]:
    """What differs between the ``stored`` rows of some units and their ``fresh`` re-run: row counts,
    labels, and numbers outside ``|fresh - stored| <= atol + rtol |stored|`` (NaN equals NaN); ``skip``
    names the columns not compared (the volatile ones); ``prefix``: the fresh run had a smaller budget, so
    its rows are compared with the first rows of each stored unit.  An empty list: they agree."""
    problems = []
    for unit, old in stored.groupby("unit", sort=False):
        new = fresh[fresh["unit"] == unit]
        if prefix and 0 < len(new) <= len(old):
            old = old.head(len(new))
        if len(new) != len(old):
            problems.append(f"{unit}: {len(old)} stored records, {len(new)} now")
            continue
        for column in [c for c in old.columns if c not in skip and old[c].notna().any()]:
            before = old[column].to_numpy()
            after = new[column].to_numpy() if column in new else np.full(len(old), np.nan)
            if pd.api.types.is_numeric_dtype(old[column]):
                after = pd.to_numeric(pd.Series(after), errors="coerce").to_numpy(float)
                ok = np.isclose(after, before.astype(float), rtol=rtol, atol=atol, equal_nan=True)
            else:
                ok = before.astype(str) == after.astype(str)
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                was, now = (value.item() if hasattr(value, "item") else value for value in (before[i], after[i]))
                problems.append(f"{unit} {column} (row {i}): stored {was!r}, now {now!r}")
    return problems
