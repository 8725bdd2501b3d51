"""The data search path ($METALAB_DATA, ./data, ~/.cache/metalab), the loaders that use it, and `metalab data`."""

import os
from pathlib import Path

import pytest

from metalab.cli import main
from metalab.data import find_air_quality_dir
from metalab.data.locations import DATASETS, candidate_dirs, find, report, search_roots
from metalab.data.omniglot import find_omniglot_dir, find_one_shot_runs

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Three empty search roots: $METALAB_DATA, ./data (the working directory is tmp_path/work) and
    ~/.cache/metalab (HOME is tmp_path/home)."""
    env, work, home = tmp_path / "env", tmp_path / "work", tmp_path / "home"
    for folder in (env, work / "data", home / ".cache" / "metalab"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("METALAB_DATA", str(env))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return {"env": env, "cwd": work / "data", "cache": home / ".cache" / "metalab"}


def put_air_quality(folder: Path) -> Path:
    target = folder / "beijing_air_quality"
    target.mkdir(parents=True)
    (target / "PRSA_Data_Demo_20130301-20170228.csv.gz").touch()
    return target


def put_omniglot(folder: Path) -> Path:
    target = folder / "omniglot"
    target.mkdir(parents=True)
    (target / "all_runs.zip").touch()
    return target


def test_search_order_is_environment_then_working_directory_then_cache(roots, monkeypatch):
    assert search_roots() == [roots["env"], roots["cwd"], roots["cache"]]
    monkeypatch.delenv("METALAB_DATA")
    assert search_roots() == [roots["cwd"], roots["cache"]]
    assert candidate_dirs(None, ("omniglot",))[:2] == [roots["cwd"], roots["cwd"] / "omniglot"]


def test_first_root_holding_the_files_wins(roots):
    cached = put_air_quality(roots["cache"])
    assert find("beijing_air_quality") == cached
    local = put_air_quality(roots["cwd"])
    assert find("beijing_air_quality") == local
    assert find_air_quality_dir() == local  # the loader goes through the same search
    env = put_air_quality(roots["env"])
    assert find("beijing_air_quality") == env


def test_an_explicit_path_replaces_the_search_path(roots, tmp_path):
    put_air_quality(roots["env"])
    assert find_air_quality_dir(tmp_path / "elsewhere") is None
    assert find("beijing_air_quality", roots["env"]) == roots["env"] / "beijing_air_quality"


def test_omniglot_loaders_search_the_cache(roots):
    folder = put_omniglot(roots["cache"])
    assert find_omniglot_dir() == folder == find("omniglot")
    assert find_one_shot_runs() == folder / "all_runs.zip"


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match=r"dataset='mnist' is not allowed: one of 'omniglot', 'beijing_air_quality'"):
        find("mnist")


def test_metalab_data_lists_what_was_found_where_and_what_each_lab_uses(roots, capsys):
    local = put_omniglot(roots["cwd"])
    assert main(["data"]) == 0
    shown = capsys.readouterr().out
    assert shown == report() + "\n"
    omniglot, air = shown.split("\n\nomniglot:")[1].split("\n\nbeijing_air_quality:")
    assert f"found in {local}" in omniglot
    assert "memory_reduced, dataset='auto' would use Omniglot" in omniglot
    assert "not found" in air and DATASETS["beijing_air_quality"].expected in air
    assert "archive.ics.uci.edu/dataset/501" in air and "the part is skipped" in air
    for root in roots.values():
        assert str(root) in shown.split("\n\n")[0]


def test_shared_data_is_found_through_the_environment(monkeypatch):
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_DATA} is missing in CI")
        pytest.skip(f"{SHARED_DATA} is absent")
    monkeypatch.setenv("METALAB_DATA", str(SHARED_DATA))
    assert find("omniglot") == SHARED_DATA / "omniglot"
    assert find_air_quality_dir() == SHARED_DATA / "beijing_air_quality"
