"""Every file write of the package goes through the shared atomic, link-refusing writer.

The test reads the package source (ast, nothing imported) and lists each call that
writes a file (``open(..., "w")``, ``.to_csv(path)``, ``.to_parquet``, ``savefig``,
``write_text``, ``write_bytes``, ``json.dump``, ``np.save``, ``torch.save``,
``save_file``, ``save_pretrained``, ``sio.dump``, ``sf.write``) that is not inside
the arguments of :func:`ssl_ser.atomic.write_file`. Such a call is allowed only
in the writer itself and in the functions of ``ALLOWED`` (each with its reason).
"""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pandas as pd
import pytest

import ssl_ser
from ssl_ser.atomic import check_writable, write_file, write_text
from ssl_ser.classify.results import CellStore, write_tables
from ssl_ser.errors import OutputError

PACKAGE = Path(ssl_ser.__file__).parent
WRITER_CALLS = {"write_file"}
WRITE_METHODS = {
    "to_csv",
    "to_parquet",
    "to_json",
    "to_excel",
    "savefig",
    "write_text",
    "write_bytes",
    "save_pretrained",
    "save_file",
    "save_model",
}
WRITE_FUNCTIONS = {"save_file"}
# module alias -> its writing functions
MODULE_WRITES = {
    "json": {"dump"},
    "np": {"save", "savez", "savez_compressed", "savetxt"},
    "numpy": {"save", "savez", "savez_compressed", "savetxt"},
    "torch": {"save"},
    "sio": {"dump"},
    "sf": {"write"},
    "soundfile": {"write"},
    "shutil": {"copy", "copy2", "copyfile"},
    "pickle": {"dump"},
}
# "module.py:function" -> why it writes without the shared writer
ALLOWED: dict[str, str] = {
    "cache/shards.py:ShardRecord.write": "cache territory: its own temporary file, rename and "
    "storage-error messages (ssl_ser.cache.layout)",
    "classify/sweep/run.py:shared_blocks": "memory maps in a private mkdtemp folder that is "
    "removed when the sweep ends; never an output file",
    "finetune/checkpoint.py:_write_checkpoint": "writes into a new temporary folder that "
    "checkpoint.save renames into place whole (and removes on any error)",
    "finetune/model.py:save_model": "fine-tuned model files, written into the temporary folder "
    "that finetune/run.py:_save_model seals and renames into place (predict/integrity.py)",
    "finetune/run.py:_save_model": "writes into integrity.fresh_folder: a new temporary folder, "
    "sealed and renamed into place whole",
    "predict/bundle.py:save": "bundle files, written into integrity.fresh_folder (see above)",
    "predict/bundle.py:_save_estimator": "bundle files, written into integrity.fresh_folder",
    "predict/bundle.py:_save_torch_head": "bundle file, written into integrity.fresh_folder",
    "predict/integrity.py:seal": "integrity.json of the sealed folder: its own temporary file "
    "and rename, inside the fresh folder",
    "cli/predict.py:write_csv": "ser predict --output: its own temporary file and rename (the "
    "rename replaces a link, never follows it), with predict's own messages",
    "pipelines/demo.py:build_model": "transformers writes the random demo model's folder",
    "testing/": "test fixtures: synthetic corpora and tiny models in temporary folders",
}


def _callee(node: ast.Call) -> tuple[str | None, str]:
    """(owner, called name) of a call: ``np.save`` -> ("np", "save"), ``open`` -> (None, "open").

    The owner of a method called on an expression (``(folder / x).write_text``) is "".
    """
    func = node.func
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        return (func.value.id if isinstance(func.value, ast.Name) else ""), func.attr
    return None, ""


def _opens_for_writing(node: ast.Call, owner: str | None) -> bool:
    """``open(p, "w")``, ``path.open("wb")``, ``open(p, mode="a")``..."""
    modes = [k.value for k in node.keywords if k.arg == "mode"]
    position = 1 if owner is None else 0  # open(path, mode) vs path.open(mode)
    if len(node.args) > position:
        modes.append(node.args[position])
    return any(
        isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+")
        for m in modes
    )


def is_write(node: ast.Call) -> bool:
    """Whether the call writes a file (``to_csv()`` with no path returns text: not a write)."""
    owner, name = _callee(node)
    if name == "open":
        return _opens_for_writing(node, owner)
    if name in MODULE_WRITES.get(owner or "", set()):
        return True
    if owner is None:
        return name in WRITE_FUNCTIONS
    if name in ("to_csv", "to_json"):
        return bool(node.args) or any(k.arg == "path_or_buf" for k in node.keywords)
    return name in WRITE_METHODS


class _Finder(ast.NodeVisitor):
    """Write calls outside ``write_file(...)``, with the function they sit in."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.inside_writer = 0
        self.found: list[tuple[str, int, str]] = []

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_Call(self, node: ast.Call) -> None:
        writer = _callee(node)[1] in WRITER_CALLS
        if not writer and not self.inside_writer and is_write(node):
            self.found.append((".".join(self.scope) or "<module>", node.lineno, ast.unparse(node)))
        self.inside_writer += writer
        self.generic_visit(node)
        self.inside_writer -= writer


def unguarded_writes() -> list[tuple[str, int, str]]:
    """("module.py:function", line, call) of every write outside the shared writer."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        finder = _Finder()
        finder.visit(ast.parse(path.read_text(encoding="utf-8")))
        out += [(f"{relative}:{scope}", line, call) for scope, line, call in finder.found]
    return out


def _allowed(where: str) -> str | None:
    return next((key for key in ALLOWED if where == key or where.startswith(key)), None)


def test_every_write_goes_through_the_shared_writer() -> None:
    bad = [f"{where} line {line}: {call}" for where, line, call in unguarded_writes()]
    bad = [entry for entry in bad if _allowed(entry.split(" line ")[0]) is None]
    assert not bad, "writes outside ssl_ser.atomic.write_file:\n" + "\n".join(bad)


def test_every_exception_is_still_needed() -> None:
    used = {_allowed(where) for where, _, _ in unguarded_writes()}
    assert set(ALLOWED) - used == set()


def test_the_finder_sees_each_kind_of_write() -> None:
    source = """
def f(df, fig, p, t):
    open(p, "w"); p.open("ab"); open(p, mode="x"); df.to_csv(p); df.to_parquet(p)
    fig.savefig(p); p.write_text(t); p.write_bytes(t); json.dump(t, h); np.save(p, t)
    torch.save(t, p); save_file(t, p); sf.write(p, t, 16000)
def g(df, p):
    open(p); p.open(); df.to_csv(index=False); write_file(p, lambda q: df.to_csv(q))
def h(p, m):
    (p / "x").write_text(""); m(1).save_pretrained(p); m.booster_.save_model(p)
"""
    finder = _Finder()
    finder.visit(ast.parse(source))
    assert [scope for scope, _, _ in finder.found] == ["f"] * 13 + ["h"] * 3


# --- the writer's behaviour -------------------------------------------------------------


def _outside_file(tmp_path: Path) -> Path:
    outside = tmp_path / "elsewhere" / "precious.csv"
    outside.parent.mkdir()
    outside.write_text("precious\n")
    return outside


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "sub" / "table.csv"
    write_text(target, "old\n", root=tmp_path / "out")
    write_text(target, "new\n", root=tmp_path / "out")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_a_link_at_the_target_is_refused_and_the_outside_file_kept(tmp_path: Path) -> None:
    outside = _outside_file(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.csv").symlink_to(outside)
    with pytest.raises(
        OutputError,
        match=r"refusing to write .*results\.csv: it is a symbolic "
        r"link \(to .*precious\.csv\)",
    ):
        write_text(tmp_path / "out" / "results.csv", "new\n")
    assert outside.read_text() == "precious\n"
    assert (tmp_path / "out" / "results.csv").is_symlink()


def test_a_linked_folder_below_the_root_is_refused(tmp_path: Path) -> None:
    outside = _outside_file(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "figures").symlink_to(outside.parent)
    with pytest.raises(OutputError, match=r"refusing to write .*figures: it is a symbolic link"):
        write_text(tmp_path / "out" / "figures" / "precious.csv", "x", root=tmp_path / "out")
    assert sorted(p.name for p in outside.parent.iterdir()) == ["precious.csv"]
    assert outside.read_text() == "precious\n"


def test_a_failed_write_keeps_the_old_file_and_names_the_reason(tmp_path: Path) -> None:
    target = tmp_path / "summary.csv"
    target.write_text("old\n")

    def full_disk(path: Path) -> None:
        path.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(
        OutputError, match=r"^cannot write .*summary\.csv: No space left on device$"
    ):
        write_file(target, full_disk)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_check_writable_names_the_option_and_the_reason(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(
        OutputError, match=r"^cannot write into --output .*a-file/out: Not a directory$"
    ):
        check_writable(tmp_path / "a-file" / "out")
    assert check_writable(tmp_path / "fine") == tmp_path / "fine"
    assert list((tmp_path / "fine").iterdir()) == []


# --- the writes of the toolkit ----------------------------------------------------------


def _store_with_one_cell(output: Path) -> CellStore:
    store = CellStore(output)
    row = {
        "cell_id": "c1",
        "extractor": "mfcc",
        "train_corpus": "emodb",
        "train_condition": "clean",
        "test_corpus": "emodb",
        "test_condition": "clean",
        "layer": "0",
        "pooling": "mean",
        "classifier": "logreg",
        "split": "speaker-kfold",
        "fold": 0,
        "ua": 0.5,
        "wa": 0.5,
        "macro_f1": 0.5,
        "n_test": 4,
    }
    store.save("c1", [row], pd.DataFrame())
    return store


@pytest.mark.parametrize("name", ["results.csv", "summary.csv", "results.parquet"])
def test_results_tables_never_follow_a_link_out(tmp_path: Path, name: str) -> None:
    outside = _outside_file(tmp_path)
    store = _store_with_one_cell(tmp_path / "out")
    (tmp_path / "out" / name).symlink_to(outside)
    with pytest.raises(OutputError, match=rf"refusing to write .*{name}: it is a symbolic link"):
        write_tables(store, n_boot=0)
    assert outside.read_text() == "precious\n"


def test_the_cells_folder_never_follows_a_link_out(tmp_path: Path) -> None:
    outside = _outside_file(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cells").symlink_to(outside.parent)
    with pytest.raises(OutputError, match=r"refusing to write .*cells: it is a symbolic link"):
        CellStore(tmp_path / "out")
    assert sorted(p.name for p in outside.parent.iterdir()) == ["precious.csv"]


@pytest.mark.parametrize(
    ("code", "shown"),
    [(errno.EROFS, True), (errno.ENOSPC, True), (errno.EACCES, True), (errno.ECONNRESET, False)],
)
def test_the_cli_shows_os_refusals_in_one_line(tmp_path: Path, monkeypatch, code, shown) -> None:
    from click.testing import CliRunner

    import ssl_ser.report
    from ssl_ser.cli.main import cli

    target = tmp_path / "out" / "report.html"

    def refused(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr(ssl_ser.report, "write_report", refused)
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "-o", str(target)])
    assert result.exit_code == 1
    if shown:
        assert result.output == f"error: {target}: {os.strerror(code)}\n"
    else:  # not a refusal of the file system: a bug to see in full
        assert result.output == "" and isinstance(result.exception, OSError)
