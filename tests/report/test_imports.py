"""A report is drawn from the results table alone: report/ imports its schema from ssl_ser.results.

The test reads report/'s source (ast, nothing imported), so a function-local
import counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ssl_ser.report

# Modules that write results tables; report/ reads the tables through ssl_ser.results.
WRITERS: tuple[str, ...] = ("ssl_ser.classify.results", "ssl_ser.finetune.config")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, and ``module.name`` for each ``from module import name``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_report_does_not_import_the_writers_of_the_results_table():
    folder = Path(ssl_ser.report.__file__).parent
    offending = {
        f"{path.name}: {module}"
        for path in sorted(folder.glob("*.py"))
        for module in imported_modules(path)
        if module in WRITERS
    }
    assert not offending, f"report/ imports the results table's writers: {sorted(offending)}"


def test_imported_modules_sees_local_and_from_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "import os\ndef f():\n    from ssl_ser.classify import results\n"
        "    from ssl_ser.finetune.config import FinetuneConfig\n"
    )
    found = imported_modules(source)
    assert {"os", "ssl_ser.classify.results", "ssl_ser.finetune.config"} <= found
