"""The ``metalab`` command: start the dashboard or JupyterLab, run an experiment to files.

metalab app [--port 8501] [--address 127.0.0.1]
metalab lab [--port 8888]
metalab list
metalab show EXPERIMENT [--preset quick]
metalab run EXPERIMENT [--preset quick|paper] [--set key=value ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from metalab.core import ConfigError, collect, parse_assignments
from metalab.experiments import EXPERIMENTS, get_experiment

REPO_ROOT = Path(__file__).resolve().parents[1]


def _source_path(relative: str) -> Path:
    path = REPO_ROOT / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{relative} was not found next to the metalab package ({REPO_ROOT}); the dashboard and notebooks "
            "ship with the source checkout: install it with `pip install -e .` from a clone"
        )
    return path


def _app(args: argparse.Namespace) -> int:
    home = _source_path("app/Home.py")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(home),
        "--server.address",
        args.address,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    print(f"metalab dashboard: http://{args.address}:{args.port}", flush=True)
    return subprocess.call(command, cwd=REPO_ROOT)


def _lab(args: argparse.Namespace) -> int:
    notebooks = _source_path("notebooks")
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--notebook-dir={notebooks}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={args.port}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root, which Jupyter refuses by default
        command.append("--allow-root")
    return subprocess.call(command, cwd=REPO_ROOT)


def _list(args: argparse.Namespace) -> int:
    for name in sorted(EXPERIMENTS):
        experiment = get_experiment(name)
        print(f"{name:16s} {experiment.paper.title}  (parts: {', '.join(experiment.part_names)})")
    return 0


def _show(args: argparse.Namespace) -> int:
    experiment = get_experiment(args.experiment)
    config = experiment.config.preset(args.preset)
    help_texts = experiment.config.describe()
    print(f"{experiment.paper.title}, preset {args.preset!r}; change a field with --set NAME=VALUE\n")
    for name, value in config.to_dict().items():
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        print(f"  {name} = {shown}\n      {help_texts[name]}")
    return 0


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    experiment = get_experiment(args.experiment)
    config = experiment.config.preset(args.preset, **parse_assignments(args.set))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
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
            records.append(record)
            if record.progress is not None:
                bar.update(100 * record.progress - bar.n)
                bar.set_postfix_str(f"{record.part}: {record.method}", refresh=False)
        bar.update(100 - bar.n)  # done, also when every part was skipped
    frame = collect(records)
    frame.to_csv(out / "records.csv", index=False)
    rows = [{k: _json_safe(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    payload = {"experiment": args.experiment, "preset": args.preset, "config": config.to_dict(), "records": rows}
    (out / "records.json").write_text(json.dumps(payload, indent=1, default=str))
    for name, figure in experiment.figures(frame).items():
        figure.savefig(out / f"{name}.png", dpi=120)
    written = sorted(p.name for p in out.iterdir())
    print(f"wrote {len(frame)} records and {len(written)} files to {out}: {', '.join(written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalab", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    app = commands.add_parser("app", help="start the Streamlit dashboard")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--address", default="127.0.0.1", help="bind address (default: localhost only)")
    app.set_defaults(handler=_app)

    lab = commands.add_parser("lab", help="start JupyterLab on the notebooks")
    lab.add_argument("--port", type=int, default=8888)
    lab.set_defaults(handler=_lab)

    commands.add_parser("list", help="list the experiments").set_defaults(handler=_list)

    show = commands.add_parser("show", help="show an experiment's settings and what each one allows")
    show.add_argument("experiment", choices=sorted(EXPERIMENTS))
    show.add_argument("--preset", default="quick")
    show.set_defaults(handler=_show)

    run = commands.add_parser("run", help="run an experiment and write records (CSV, JSON) and figures (PNG)")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    run.add_argument("--preset", default="quick", help="quick (seconds) or paper (published scale)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting; tuples are comma separated, e.g. --set samples_grid=5,10,20",
    )
    run.add_argument("--out", default=os.path.join("runs", "latest"), help="output folder (default: runs/latest)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"metalab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metalab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
