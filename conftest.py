"""Root pytest configuration: let notebook kernels (started by nbval) find the shared data."""

import os
from pathlib import Path

# Kernels inherit this process's environment, so setting METALAB_DATA here reaches them.
_SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
if "METALAB_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["METALAB_DATA"] = str(_SHARED_DATA)
