"""Where a stored result came from: the code (git commit, dirty flag, package versions) and the machine
(platform, CPU model, torch threads, GPU) that produced it, for ``metalab reproduce``'s provenance.json."""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

import metalab

CPUINFO = Path("/proc/cpuinfo")


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. ``2026-11-30T05:12:09Z``."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_state(folder: Path) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git checkout holding ``folder``; dirty
    means a tracked file differs from the commit (None, None outside a checkout or without git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(changes.strip())}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` reports."""
    if CPUINFO.exists():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    """The code's versions and the machine's description for a run on ``device``."""
    return {
        **{f"git_{key}": value for key, value in git_state(Path(metalab.__file__).parent).items()},
        "metalab": metalab.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
    }
