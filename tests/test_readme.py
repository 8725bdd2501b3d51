"""The README's Python examples run as written (each ```python block in order, in one namespace), so the
first code a user copies cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_example_runs(number):
    """Fails when the example raises (an API it uses changed, or what it prints broke)."""
    exec(compile(BLOCKS[number], f"README.md example {number + 1}", "exec"), {})  # noqa: S102
