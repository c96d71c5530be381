"""Checks shared by the corpus reader tests: fixture trees, expected rows, bad files, skip mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ssl_ser.corpora import ScanResult, scan
from ssl_ser.errors import CorpusFileError

TELEPHONE_DIR = Path("wav_telephone", "wav_telephone")


def published_tree(corpus: str, make_tree: Callable[..., object], **options: object):
    """A module-scoped fixture: the corpus fixture tree in its published layout, made once."""

    @pytest.fixture(scope="module")
    def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
        root = tmp_path_factory.mktemp(corpus)
        make_tree(root, **options)
        return root

    return published


def _same(text: str) -> str:
    return text


def assert_matches(
    manifest: pd.DataFrame,
    rows: list[dict],
    root: Path,
    columns: list[str],
    path_form: Callable[[str], str] = _same,
) -> None:
    """Check a manifest row for row against the fixture's expected rows under ``root``.

    ``path_form`` normalises both sides' paths before comparing (e.g. Unicode NFC).
    """
    expected = pd.DataFrame(rows).set_index("utt_id").sort_index()
    got = manifest.set_index("utt_id").sort_index()
    assert got.index.tolist() == expected.index.tolist()
    pd.testing.assert_frame_equal(got[columns], expected[columns], check_dtype=False)
    assert got["sample_rate"].tolist() == expected["sample_rate"].tolist()
    assert got["duration"].to_numpy() == pytest.approx(expected["duration"].to_numpy())
    paths = [path_form(p) for p in got["path"]]
    assert paths == [path_form(str(root.resolve() / p)) for p in expected["relpath"]]


def assert_telephone_copies_paired(manifest: pd.DataFrame, root: Path) -> None:
    """Each row's telephone copy is the same-named file in ``root``'s wav_telephone folder."""
    telephone = root.resolve() / TELEPHONE_DIR
    names = [Path(p).name for p in manifest["path"]]
    assert manifest["telephone_path"].tolist() == [str(telephone / n) for n in names]


def assert_scan_stops_at(corpus: str, root: Path, name: str, reason: str) -> None:
    """Scanning ``root`` raises for the file ``name``, naming it and giving ``reason``."""
    with pytest.raises(CorpusFileError) as error:
        scan(corpus, root)
    assert error.value.path.endswith(name)
    assert reason in error.value.reason
    assert name in str(error.value)


def assert_bad_name_raises_and_skips(
    corpus: str, root: Path, name: str, message: str
) -> ScanResult:
    """The file ``name`` stops a strict scan and is the only file a skip-mode scan skips."""
    with pytest.raises(CorpusFileError, match=message) as caught:
        scan(corpus, root)
    assert Path(caught.value.path).name == name
    result = scan(corpus, root, on_error="skip")
    assert [Path(p).name for p in result.skipped["path"]] == [name]
    return result


def assert_every_audio_file_accounted_for(result: ScanResult, root: Path) -> None:
    """Every WAV under ``root`` is either kept or skipped, never both."""
    found = {str(p) for p in root.resolve().rglob("*.wav")}
    kept, skipped = set(result.manifest["path"]), set(result.skipped["path"])
    assert kept | skipped == found
    assert not kept & skipped


def _file_name(path: str) -> str:
    return Path(path).name


def assert_skip_reasons(
    skipped: pd.DataFrame,
    bad: dict[str, str],
    key: Callable[[str], str] = _file_name,
) -> None:
    """Exactly the ``bad`` files were skipped, each for its reason; ``key`` maps a path to a key."""
    reasons = {key(p): r for p, r in skipped.itertuples(index=False)}
    assert set(reasons) == set(bad)
    for name, reason in bad.items():
        assert reason in reasons[name]
