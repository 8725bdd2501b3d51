"""The Examples in the library's docstrings run and print what they say (doctest, one test per module).

Modules are listed by name rather than collected with pytest's --doctest-modules, which would also
import the dashboard's page scripts.  Every listed module must hold at least one example.
"""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import metalab.subspace

MODULES = (
    "metalab.subspace.anil",
    "metalab.subspace.baselines",
    "metalab.subspace.lowrank",
    "metalab.subspace.meta_sp",
    "metalab.subspace.metrics",
    "metalab.subspace.registry",
    "metalab.sparse.ista",
    "metalab.subspace.tasks",
    "metalab.data.linear",
    "metalab.data.air_quality",
    "metalab.core.checks",
    "metalab.core.config",
    "metalab.core.device",
    "metalab.core.records",
    "metalab.core.results",
    "metalab.core.seeding",
    "metalab.experiments.base",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (doctest report above)"


SUBSPACE_FUNCTIONS = [n for n in metalab.subspace.__all__ if inspect.isfunction(getattr(metalab.subspace, n))]
SECTIONS = ("Parameters\n---", "Returns\n---", "Examples\n---", ">>> ")


@pytest.mark.parametrize("name", SUBSPACE_FUNCTIONS)
def test_subspace_functions_document_parameters_returns_and_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(metalab.subspace, name))
    missing = [section for section in SECTIONS if section not in doc]
    assert not missing, f"metalab.subspace.{name}'s docstring lacks {missing}"
