"""`metalab run` loses nothing and trusts no argument: records stream to disk, an interrupted run keeps
what finished, the final files appear whole or not at all, an earlier run is not silently overwritten,
and every bad argument is one line on stderr with exit code 2."""

from __future__ import annotations

import errno
import json

import pandas as pd
import pytest
from replaced_run import replaced_run

from metalab.cli import main
from metalab.core.output import RunFolder
from metalab.core.records import Record
from metalab.experiments import get_experiment

TINY = ["--set", "parts=convergence", "methods=meta_sp,mom", "max_iter=20", "--quiet"]


def test_several_assignments_after_one_set(tmp_path):
    assert main(["run", "meta_sp", "--out", str(tmp_path / "a"), *TINY]) == 0
    payload = json.loads((tmp_path / "a" / "records.json").read_text())
    assert payload["complete"] is True
    assert payload["config"]["methods"] == ["meta_sp", "mom"] and payload["config"]["max_iter"] == 20
    assert not (tmp_path / "a" / "records.jsonl").exists()  # the stream is folded into the final files


def test_an_earlier_run_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "meta_sp", "--out", str(out), *TINY]) == 0
    (out / "stale_figure.png").write_bytes(b"old")
    assert main(["run", "meta_sp", "--out", str(out), *TINY]) == 2
    assert "already holds a run (records.csv): choose another folder or add --force" in capsys.readouterr().err
    assert (out / "stale_figure.png").exists()
    assert main(["run", "meta_sp", "--out", str(out), "--force", *TINY]) == 0
    assert not (out / "stale_figure.png").exists()  # no stale PNG beside the new records
    assert (out / "convergence.png").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "n_tasks=1e400"], "n_tasks='1e400' is not allowed: a value of type int"),
        (["--set", "d=20.9"], "d='20.9' is not allowed: a value of type int"),
        (["--set", "noise=inf"], "noise=inf is not allowed: a finite number"),
        (["--set", "rank"], "key=value"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, capsys, arguments, message):
    assert main(["run", "meta_sp", "--out", str(tmp_path / "x"), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("metalab: error: ")


def test_an_out_that_is_a_file_or_cannot_be_made_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["run", "meta_sp", "--out", str(a_file), *TINY]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    # a folder that cannot be made, even by root: /proc is a read-only pseudo file system
    assert main(["run", "meta_sp", "--out", "/proc/metalab/run", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/proc/metalab" in err


def test_an_interrupted_run_keeps_every_finished_record(tmp_path, monkeypatch, capsys):
    experiment = get_experiment("meta_sp")
    original = experiment.run

    def interrupted(config):
        for number, record in enumerate(original(config)):
            if number == 7:
                raise KeyboardInterrupt
            yield record

    with replaced_run(experiment, interrupted):
        code = main(["run", "meta_sp", "--out", str(tmp_path), *TINY])
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted at" in err and "kept the 7 finished records" in err
    assert len(pd.read_csv(tmp_path / "records.csv")) == 7
    assert json.loads((tmp_path / "records.json").read_text())["complete"] is False
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*.tmp"))


class _FullDisk:
    """A file whose writes fail once ``room`` bytes are used, as a full disk does (the bytes that fit
    are kept, as the operating system would)."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data: bytes) -> int:
        if self.file.tell() + len(data) > self.room:
            self.file.write(data[: self.room - self.file.tell()])
            raise OSError(errno.ENOSPC, "No space left on device", "records.jsonl")
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


def test_a_full_disk_leaves_only_whole_records(tmp_path):
    folder = RunFolder(tmp_path)
    folder._stream = _FullDisk(folder._stream, room=300)
    record = Record("convergence", "meta_sp", 1, {"iteration": 1, "sin_theta": 0.5})
    with pytest.raises(OSError, match="No space left"):
        for _ in range(100):
            folder.append(record)
    folder.close()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == folder.count > 0
    assert all(json.loads(line)["sin_theta"] == 0.5 for line in lines)  # every line is a whole record


def test_a_failed_final_write_leaves_the_old_file(tmp_path):
    from metalab.core.output import atomic_write

    target = tmp_path / "records.csv"
    target.write_text("old,complete\n")

    def failing(file):
        file.write(b"new,half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, failing)
    assert target.read_text() == "old,complete\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_app_on_a_taken_port_says_so_before_printing_a_url(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert "http://" not in out
    assert f"127.0.0.1:{port} is already in use" in err and f"--port {port + 1}" in err


def test_the_dashboard_launcher_preloads_what_the_page_scripts_import(tmp_path):
    from metalab.dashboard.launch import SCRIPTS, script_imports

    preloaded = set(script_imports())
    assert {"pandas", "altair", "streamlit", "metalab.experiments.meta_sp"} <= preloaded
    assert "metalab.dashboard.charts.mlsr" in preloaded  # `from package import submodule`
    assert len(SCRIPTS) == 6  # app.py, home.py and the four pages
    script = tmp_path / "page.py"
    script.write_text(
        "import json\nfrom os import path\nfrom collections import abc as a, OrderedDict\nfrom . import x\n"
    )
    assert script_imports([script]) == ["collections", "collections.abc", "json", "os", "os.path"]


def test_a_run_that_cannot_fit_in_memory_is_refused_before_it_starts(tmp_path, capsys):
    big = ["--set", "n_tasks=8000", "n_samples=100", "d=2000", "parts=convergence"]
    assert main(["run", "meta_sp", "--out", str(tmp_path / "big"), *big]) == 2
    err = capsys.readouterr().err
    assert "of memory and" in err and "are available: lower tasks T" in err and "--ignore-cost" in err
    assert not (tmp_path / "big").exists()  # refused before anything was written


def test_a_grid_has_a_maximum_length(tmp_path, capsys):
    grid = ",".join(str(m) for m in range(5, 2005))
    assert main(["run", "meta_sp", "--out", str(tmp_path / "g"), "--set", f"samples_grid={grid}"]) == 2
    assert "samples_grid='2000 values' is not allowed: at most 64 values" in capsys.readouterr().err
