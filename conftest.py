"""Root pytest configuration: one pinned runtime for the unit tests, and the shared data for notebook kernels."""

import os
from pathlib import Path

from metalab.core.claims import pin_runtime

# Kernels inherit this process's environment, so setting METALAB_DATA here reaches them.
_SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
if "METALAB_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["METALAB_DATA"] = str(_SHARED_DATA)


def pytest_configure(config):
    """One torch thread ($METALAB_THREADS overrides it), deterministic kernels and seeded generators.

    One thread: the tests' tensors are small, the machine's cores are shared with notebook kernels and
    browsers, and a fixed count fixes the order of parallel reductions. Notebook kernels are separate
    processes; each pins itself with the same pin_runtime in its first cell.
    """
    pin_runtime()
