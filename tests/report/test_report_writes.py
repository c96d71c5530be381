"""`ser report`: its writes stay inside the report folder, each report owns its figures,
and a missing, empty or damaged results folder is one line, not a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ssl_ser.cli.main import cli
from ssl_ser.errors import OutputError
from ssl_ser.report import write_report

from .conftest import Spec, write

SMALL = {"conditions": False, "cross": False, "search": False, "folds": 2}


def _results(folder: Path, extractor: str) -> Path:
    write(folder, Spec(extractors=(extractor,), **SMALL))
    return folder


def _linked_figures(markdown: Path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown.read_text())


def test_two_reports_in_one_folder_keep_their_own_figures(tmp_path: Path) -> None:
    # two baselines: each report draws one figure under the same name (the confusion matrix)
    first = _results(tmp_path / "r1", "mfcc")
    second = _results(tmp_path / "r2", "egemaps")
    out = tmp_path / "out"
    write_report(first, out / "a.html", n_boot=0)
    a_links = _linked_figures(out / "a.md")
    before = {link: (out / link).read_bytes() for link in a_links}
    write_report(second, out / "b.html", n_boot=0)
    b_links = _linked_figures(out / "b.md")
    assert a_links and b_links
    assert all(link.startswith("figures-a/") for link in a_links)
    assert all(link.startswith("figures-b/") for link in b_links)
    assert {link: (out / link).read_bytes() for link in a_links} == before  # a's untouched


def test_the_default_report_keeps_figures_folder(tmp_path: Path) -> None:
    write_report(_results(tmp_path / "r", "mfcc"), tmp_path / "out" / "report.html", n_boot=0)
    links = _linked_figures(tmp_path / "out" / "report.md")
    assert links and all(link.startswith("figures/") for link in links)


@pytest.mark.parametrize("name", ["report.md", "report.html"])
def test_a_linked_report_file_is_refused_and_its_target_kept(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).symlink_to(outside)
    results = _results(tmp_path / "r", "mfcc")
    with pytest.raises(OutputError, match=rf"refusing to write .*{name}: it is a symbolic link"):
        write_report(results, tmp_path / "out" / "report.html", n_boot=0)
    assert outside.read_text() == "precious"


def test_a_linked_figures_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "layers-x.png").write_bytes(b"precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "figures").symlink_to(elsewhere)
    results = _results(tmp_path / "r", "facebook/wav2vec2-base")
    with pytest.raises(OutputError, match=r"refusing to write .*figures: it is a symbolic link"):
        write_report(results, tmp_path / "out" / "report.html", n_boot=0)
    assert [p.name for p in elsewhere.iterdir()] == ["layers-x.png"]
    assert (elsewhere / "layers-x.png").read_bytes() == b"precious"


def _report(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["report", *args])
    return result.exit_code, result.output


def test_report_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    code, output = _report(str(tmp_path / "missing"), "-o", str(tmp_path / "r.html"))
    assert code == 1
    assert output == f"error: results folder {tmp_path / 'missing'} does not exist\n"


def test_report_of_an_empty_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, output = _report(str(tmp_path / "empty"), "-o", str(tmp_path / "r.html"))
    assert code == 1
    assert output.startswith(
        f"error: {tmp_path / 'empty'} holds no results table and no finished cells; expected"
    )
    assert output.count("\n") == 1


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("results.parquet", b"\x00garbage" * 50, "Parquet magic bytes not found"),
        ("results.parquet", b"", "Parquet file size is 0 bytes"),
        ("results.csv", b"", "No columns to parse from file"),
    ],
)
def test_report_of_a_damaged_table_is_one_line(
    tmp_path: Path, name: str, content: bytes, detail: str
) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / name).write_bytes(content)
    code, output = _report(str(tmp_path / "r"), "-o", str(tmp_path / "out.html"))
    assert code == 1
    assert output.startswith(f"error: {tmp_path / 'r' / name} is not a readable table (")
    assert detail in output and "it is damaged or not a table: rebuild or remove it" in output
    assert output.count("\n") == 1


def test_report_of_damaged_predictions_is_one_line(tmp_path: Path) -> None:
    results = _results(tmp_path / "r", "mfcc")
    (results / "predictions.parquet").write_bytes(b"not parquet at all")
    code, output = _report(str(results), "-o", str(tmp_path / "out.html"))
    assert code == 1
    assert output.startswith(f"error: {results / 'predictions.parquet'} is not a readable table")
    assert output.count("\n") == 1
