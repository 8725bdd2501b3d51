"""``python -m metalab.dashboard.launch run APP [flags]``: Streamlit's command line, after importing the
modules the dashboard's scripts import.

Streamlit runs the page scripts in its server process, so the first visit to a new server used to pay
those imports (torch, pandas, Altair, the experiments, the claims and charts): about 4 s on the 2-core
machine, the gap between the first page a server served and every later one in
``benchmarks/dashboard.py``.  Imported here, before the server starts listening, they are already in
``sys.modules`` when the first script runs.  The list is read from the scripts' own import statements
(:func:`script_imports`), so a page that imports something new is preloaded without a change here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

DASHBOARD = Path(__file__).parent
#: the scripts Streamlit runs: the entry script, Home and one page per paper
SCRIPTS = (DASHBOARD / "app.py", DASHBOARD / "home.py", *sorted((DASHBOARD / "papers").glob("*.py")))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a name inside a module (a function, a class), not a module
        return False


def script_imports(scripts=SCRIPTS) -> list[str]:
    """The modules ``scripts`` import, absolute imports only: ``import a.b`` gives ``a.b``;
    ``from a import b`` gives ``a``, and ``a.b`` too when ``b`` is a submodule."""
    names = set()
    for script in scripts:
        for node in ast.walk(ast.parse(Path(script).read_text(), filename=str(script))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}"))
    return sorted(names)


def main() -> None:
    for name in script_imports():
        importlib.import_module(name)
    from streamlit.web.cli import main as streamlit

    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit(prog_name="streamlit")


if __name__ == "__main__":
    main()
