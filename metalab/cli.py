"""The ``metalab`` command: start the dashboard or JupyterLab, run an experiment to files.

metalab app [--port 8501] [--address 127.0.0.1]
metalab lab [--port 8888] [--folder DIR] [JupyterLab options, e.g. --no-browser]
metalab notebooks DIR [--force]
metalab list
metalab data
metalab show EXPERIMENT [--preset quick]
metalab run EXPERIMENT [--preset quick|paper] [--set key=value ...] [--out DIR] [--force]
metalab reproduce EXPERIMENT|all [--restart] [--out DIR] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import textwrap
import tomllib
import warnings
from importlib import resources
from pathlib import Path

from metalab.core import ConfigError, collect, parse_assignments
from metalab.core.cost import Cost, available_bytes, check_allocation, describe_bytes
from metalab.core.output import RunFolder, json_safe
from metalab.data.locations import report as data_report
from metalab.experiments import EXPERIMENTS, get_experiment


def _streamlit_flags() -> list[str]:
    """The dashboard's settings (``metalab/dashboard/config.toml``: localhost only, no telemetry, fast
    reruns, the theme) as ``streamlit run`` flags, so they hold from any working directory."""
    settings = tomllib.loads(resources.files("metalab.dashboard").joinpath("config.toml").read_text())
    return [f"--{section}.{key}={value}" for section, values in settings.items() for key, value in values.items()]


def _check_port_free(address: str, port: int) -> None:
    """Raise OSError naming the port and the way out when something already listens on it."""
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError as error:
            raise OSError(
                f"{address}:{port} is already in use ({error.strerror}): start on another port with --port, "
                f"e.g. metalab app --port {port + 1}"
            ) from None


def _app(args: argparse.Namespace) -> int:
    _check_port_free(args.address, args.port)
    entry = resources.files("metalab.dashboard").joinpath("app.py")
    # Streamlit's command line, after importing what the pages import (the first visit would pay it)
    command = [sys.executable, "-m", "metalab.dashboard.launch", "run", str(entry), *_streamlit_flags()]
    command += [f"--server.address={args.address}", f"--server.port={args.port}"]
    print(f"metalab dashboard: http://{args.address}:{args.port}", flush=True)
    return subprocess.call(command)


def copy_notebooks(folder: Path, *, force: bool = False) -> list[Path]:
    """Copy the notebooks that ship with the package into ``folder``; an existing notebook is kept
    (it may hold the user's edits) unless ``force``.  Returns the notebooks now in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for notebook in sorted(resources.files("metalab").joinpath("notebooks").iterdir(), key=lambda p: p.name):
        if notebook.name.endswith((".ipynb", ".cfg")):
            target = folder / notebook.name
            if force or not target.exists():
                target.write_bytes(notebook.read_bytes())
            copied.append(target)
    return [p for p in copied if p.suffix == ".ipynb"]


def _notebooks(args: argparse.Namespace) -> int:
    notebooks = copy_notebooks(Path(args.folder), force=args.force)
    print(f"{len(notebooks)} notebooks in {args.folder}: {', '.join(p.name for p in notebooks)}")
    return 0


def _lab(args: argparse.Namespace, jupyter_args: list[str]) -> int:
    shipped = Path(str(resources.files("metalab").joinpath("notebooks")))
    # an editable checkout opens its notebooks in place; an installed package copies them first
    folder = (
        shipped if os.access(shipped, os.W_OK) and args.folder is None else Path(args.folder or "metalab-notebooks")
    )
    if folder != shipped:
        copy_notebooks(folder)
    command = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={folder}", "--ServerApp.ip=127.0.0.1"]
    command.append(f"--ServerApp.port={args.port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root, which Jupyter refuses by default
        command.append("--allow-root")
    return subprocess.call(command + jupyter_args)


def _list(args: argparse.Namespace) -> int:
    for name in sorted(EXPERIMENTS):
        experiment = get_experiment(name)
        print(f"{name:16s} {experiment.paper.title}  (parts: {', '.join(experiment.part_names)})")
    return 0


def _data(args: argparse.Namespace) -> int:
    print(data_report())
    return 0


def _show(args: argparse.Namespace) -> int:
    experiment = get_experiment(args.experiment)
    config = experiment.config.preset(args.preset)
    help_texts = experiment.config.describe()
    print(f"{experiment.paper.title}, preset {args.preset!r}; change a field with --set NAME=VALUE\n")
    if args.preset == "paper" and experiment.paper_scale:
        print(textwrap.fill(experiment.paper_scale, width=100) + "\n")
    for name, value in config.to_dict().items():
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        print(f"  {name} = {shown}\n      {help_texts[name]}")
    return 0


def _check_memory(cost: Cost, *, ignore: bool, quiet: bool) -> None:
    """Refuse a run whose estimated peak memory is above what the machine has available now (unless
    ``ignore``); warn above half of it; say what the run will cost."""
    if not ignore:
        advice = f"lower {cost.driver or 'its sizes'}, or pass --ignore-cost to try anyway"
        check_allocation("this run", cost.bytes, advice)
    available = available_bytes()
    if cost.bytes > available / 2:
        print(
            f"metalab: warning: this run may need {describe_bytes(cost.bytes)} of the "
            f"{describe_bytes(available)} available",
            file=sys.stderr,
        )
    elif not quiet:
        print(f"metalab: estimated cost: {cost.describe()}", file=sys.stderr)


def _final_files(experiment, args: argparse.Namespace, config, records: list, complete: bool) -> list:
    """(name, write) of the run's final files: the records as CSV and as JSON with the config, and each
    figure as PNG (figures only for a complete run)."""
    frame = collect(records)
    rows = [{k: json_safe(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    payload = {
        "experiment": args.experiment,
        "preset": args.preset,
        "complete": complete,
        "config": config.to_dict(),
        "records": rows,
    }
    files = [
        ("records.csv", lambda f: f.write(frame.to_csv(index=False).encode())),
        ("records.json", lambda f: f.write(json.dumps(payload, indent=1, default=str).encode())),
    ]
    if complete:
        for name, figure in experiment.figures(frame).items():
            files.append((f"{name}.png", lambda f, figure=figure: figure.savefig(f, format="png", dpi=120)))
    return files


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    experiment = get_experiment(args.experiment)
    config = experiment.config.preset(args.preset, **parse_assignments(args.set))
    _check_memory(experiment.estimate(config), ignore=args.ignore_cost, quiet=args.quiet)
    folder = RunFolder(Path(args.out), force=args.force)
    records = []
    try:
        with (
            warnings.catch_warnings(),
            tqdm(
                total=100,
                unit="%",
                desc=args.experiment,
                bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
                disable=args.quiet,
            ) as bar,
        ):
            # a warning (e.g. a part skipped for lack of data) as one line above the bar, not a source excerpt
            warnings.showwarning = lambda message, *_, **__: tqdm.write(f"metalab: warning: {message}", file=sys.stderr)
            for record in experiment.run(config):
                folder.append(record)
                records.append(record)
                if record.progress is not None:
                    bar.update(100 * record.progress - bar.n)
                    bar.set_postfix_str(f"{record.part}: {record.method}", refresh=False)
            bar.update(100 - bar.n)  # done, also when every part was skipped
    except KeyboardInterrupt:
        done = records[-1].progress if records and records[-1].progress is not None else 0.0
        folder.finish(_final_files(experiment, args, config, records, complete=False))
        print(
            f"metalab: interrupted at {done:.0%}: kept the {len(records)} finished records in "
            f"{folder.path / 'records.csv'} and records.json (marked incomplete)",
            file=sys.stderr,
        )
        return 130
    except BaseException:
        folder.close()
        raise
    written = folder.finish(_final_files(experiment, args, config, records, complete=True))
    print(f"wrote {len(records)} records and {len(written)} files to {folder.path}: {', '.join(written)}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from metalab.reproduce import reproduce_all

    names = sorted(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    out = Path(args.out) if args.out else None
    reproduce_all(names, out, device=args.device, restart=args.restart, log=lambda line: print(line, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalab", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    app = commands.add_parser("app", help="start the Streamlit dashboard")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--address", default="127.0.0.1", help="bind address (default: localhost only)")
    app.set_defaults(handler=_app)

    lab = commands.add_parser(
        "lab", help="start JupyterLab on the notebooks (other options, e.g. --no-browser, go to JupyterLab)"
    )
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument(
        "--folder", help="where to copy the notebooks first (default: in place in a checkout, else ./metalab-notebooks)"
    )
    lab.set_defaults(handler=_lab)

    notebooks = commands.add_parser("notebooks", help="copy the notebooks into a folder")
    notebooks.add_argument("folder")
    notebooks.add_argument("--force", action="store_true", help="overwrite notebooks already in the folder")
    notebooks.set_defaults(handler=_notebooks)

    commands.add_parser("list", help="list the experiments").set_defaults(handler=_list)
    commands.add_parser(
        "data", help="list the real data sets: where each was found (search path) and which labs use it"
    ).set_defaults(handler=_data)

    show = commands.add_parser("show", help="show an experiment's settings and what each one allows")
    show.add_argument("experiment", choices=sorted(EXPERIMENTS))
    show.add_argument("--preset", default="quick")
    show.set_defaults(handler=_show)

    run = commands.add_parser("run", help="run an experiment and write records (CSV, JSON) and figures (PNG)")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    run.add_argument("--preset", default="quick", help="quick (seconds) or paper (published scale)")
    run.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override settings; tuples are comma separated, e.g. --set samples_grid=5,10,20 repeats=3",
    )
    run.add_argument("--out", default=os.path.join("runs", "latest"), help="output folder (default: runs/latest)")
    run.add_argument("--force", action="store_true", help="overwrite a run already in the output folder")
    run.add_argument(
        "--ignore-cost", action="store_true", help="run even when the estimated memory is above what is available"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    reproduce = commands.add_parser(
        "reproduce",
        help="run the paper preset into results/<experiment>/ with provenance; an interrupted run resumes",
    )
    reproduce.add_argument("experiment", choices=[*sorted(EXPERIMENTS), "all"])
    reproduce.add_argument(
        "--restart", action="store_true", help="discard what the folder holds (else resume it, same config only)"
    )
    reproduce.add_argument("--resume", dest="restart", action="store_false", help="resume (the default)")
    reproduce.add_argument("--out", help="folder of the results (default: the checkout's results/; <out>/<experiment>)")
    reproduce.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    reproduce.set_defaults(handler=_reproduce)
    return parser


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.strerror}: {error.filename}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra and args.handler is not _lab:
        build_parser().parse_args(argv)  # the usual error for arguments only `lab` passes on
    try:
        return args.handler(args, extra) if args.handler is _lab else args.handler(args)
    except (ConfigError, ValueError, OSError, MemoryError) as exc:  # bad settings, files, sizes that do not fit
        print(f"metalab: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metalab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
