"""One reader of data sources: a corpus folder scanned by its reader, or a manifest file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ssl_ser import manifest
from ssl_ser.corpora import corpus_manifests, read_source
from ssl_ser.errors import ConfigError, CorpusError, UnknownChoiceError
from ssl_ser.testing import write_wav

TREE = ("angry/spk1_001.wav", "happy/spk2_002.wav", "sad/spk1_003.wav")


def _folder(root: Path) -> Path:
    for i, relative in enumerate(TREE):
        write_wav(root / relative, 0.05, 16000, seed=i)
    return root


@pytest.fixture
def two_corpora(tmp_path: Path) -> Path:
    """A manifest file holding the rows of corpora ``one`` and ``two``."""
    one = read_source(_folder(tmp_path / "a"), "folder", name="one").manifest
    two = read_source(_folder(tmp_path / "b"), "folder", name="two").manifest
    path = tmp_path / "both.csv"
    manifest.write(pd.concat([one, two], ignore_index=True), path)
    return path


def test_a_generic_reader_names_the_corpus_and_a_manifest_file_gives_its_rows(two_corpora):
    assert len(read_source(two_corpora).manifest) == 6
    rows = read_source(two_corpora, name="two")
    assert set(rows.manifest["corpus"]) == {"two"} and len(rows.manifest) == 3
    assert rows.skipped.empty
    with pytest.raises(
        CorpusError, match=r"has no rows of corpus 'three'; it holds \['one', 'two'\]"
    ):
        read_source(two_corpora, name="three")


def test_corpus_manifests_joins_files_and_folders(tmp_path, two_corpora):
    folder = _folder(tmp_path / "c")
    table = corpus_manifests([two_corpora], [("folder", str(folder))])
    assert sorted(table["corpus"].unique()) == ["c", "one", "two"]  # folder: named after it
    whole = corpus_manifests([], [("any", str(two_corpora))])  # a manifest is read whole
    assert len(whole) == 6
    with pytest.raises(ConfigError, match="--corpus folder is given twice"):
        corpus_manifests([], [("folder", str(folder)), ("folder", str(folder))])
    with pytest.raises(ConfigError, match="give the data with --manifest FILE or --corpus"):
        corpus_manifests([], [])
    with pytest.raises(UnknownChoiceError, match="nocorpus"):
        corpus_manifests([], [("nocorpus", str(folder))])
    for missing in ("nope.csv", "nope"):  # was a FileNotFoundError traceback for a manifest
        path = tmp_path / missing
        with pytest.raises(ConfigError) as error:
            corpus_manifests([], [("emodb", str(path))])
        assert str(error.value) == f"--corpus emodb={path}: no such corpus folder or manifest"


def test_ser_finetune_reads_its_corpora_through_corpus_manifests(tmp_path):
    from click.testing import CliRunner

    from ssl_ser.cli.main import cli

    folder = str(_folder(tmp_path / "c"))
    twice = ["--corpus", f"folder={folder}", "--corpus", f"folder={folder}"]
    arguments = ["finetune", *twice, "--model", "m", "--output", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code != 0 and "--corpus folder is given twice" in result.output
