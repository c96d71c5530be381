"""No two modules of a sub-package import each other, not even through a function-local import.

The test reads the source (ast, nothing imported). A circle hidden in a function
body still ties the modules into one; passing a function in, or moving what both
need into the lower module, opens it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ssl_ser

SOURCE = Path(ssl_ser.__file__).parent
PACKAGES: tuple[str, ...] = (
    "cache",
    "classify",
    "classify/sweep",
    "cli",
    "corpora",
    "extract",
    "finetune",
    "pipelines",
    "predict",
    "report",
)


def sibling_imports(folder: Path, package: str) -> dict[str, set[str]]:
    """Per module of `folder` (package `package`), the modules of it that it imports anywhere.

    ``from package import Name`` of a name that is not a module imports ``__init__``.
    """
    names = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == package:
                found.update(a.name if a.name in names else "__init__" for a in node.names)
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            inside = [m.removeprefix(f"{package}.") for m in modules if m.startswith(f"{package}.")]
            found.update(m.split(".")[0] for m in inside)
        graph[path.stem] = (found & names) - {path.stem}
    return graph


def circles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every circle of imports, each once, starting at its smallest module name."""
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for nxt in graph[path[-1]]:
            if nxt in path:
                loop = path[path.index(nxt) :]
                start = loop.index(min(loop))
                found.add(tuple(loop[start:] + loop[:start]))
            else:
                walk([*path, nxt])

    for module in graph:
        walk([module])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_inside_a_package(package):
    name = "ssl_ser." + package.replace("/", ".")
    assert circles(sibling_imports(SOURCE / package, name)) == set()


def test_a_function_local_import_circle_is_found(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from ssl_ser.pkg.b import g\n")
    (tmp_path / "b.py").write_text("def g():\n    from ssl_ser.pkg import a\n")
    (tmp_path / "c.py").write_text("import ssl_ser.pkg.a\n")
    graph = sibling_imports(tmp_path, "ssl_ser.pkg")
    assert graph == {"__init__": set(), "a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert circles(graph) == {("a", "b")}
