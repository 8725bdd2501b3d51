"""A helper for tests that watch or interrupt an experiment's records on their way to the CLI."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def replaced_run(experiment, run):
    """Within the block, ``experiment.run`` (what the CLI and the pages call) is ``run``; an Experiment is a
    frozen dataclass, so the instance attribute is set and removed past its guard."""
    object.__setattr__(experiment, "run", run)
    try:
        yield
    finally:
        object.__delattr__(experiment, "run")
