"""MESD reader against fixture trees whose expected rows come from the fixture."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from ssl_ser.corpora import info, load, scan
from ssl_ser.testing import mesd as fixture
from ssl_ser.testing import write_garbage, write_wav

from .helpers import (
    assert_every_audio_file_accounted_for,
    assert_matches,
    assert_scan_stops_at,
    assert_skip_reasons,
    published_tree,
)

COLUMNS = ["speaker", "gender", "language", "emotion", "emotion_raw", "text", "split"]


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


published = published_tree("mesd", fixture.make_tree)


def test_published_layout_matches_fixture(published: Path) -> None:
    result = scan("mesd", published)
    assert result.skipped.empty
    assert_matches(result.manifest, fixture.expected_rows("published"), published, COLUMNS, nfc)
    manifest = result.manifest
    assert set(manifest["gender"]) == {"F", "M", "child"}
    assert (manifest["speaker"] == "").all()
    assert info("mesd").has_speakers is False
    assert "buenos dias" in set(manifest["text"])


def test_flat_layout_with_decomposed_names(tmp_path: Path) -> None:
    paths = fixture.make_tree(tmp_path, layout="flat", unicode_form="NFD")
    assert any(unicodedata.is_normalized("NFD", p.name) and p.name != nfc(p.name) for p in paths)
    manifest = load("mesd", tmp_path)
    assert_matches(manifest, fixture.expected_rows("flat"), tmp_path, COLUMNS, nfc)
    assert "corazón" in set(manifest["text"])
    assert (manifest["telephone_path"] != "").all()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Joy_F_A_tarde.wav", "unknown emotion code 'Joy'; expected one of Anger, Disgust"),
        ("Anger_X_A_tarde.wav", "unknown voice code 'X'; expected one of F, M, C"),
        ("Anger-F-A-tarde.wav", "does not match the MESD naming scheme"),
        ("Anger_F_tarde.wav", "does not match the MESD naming scheme"),
    ],
)
def test_bad_file_stops_the_scan_naming_it(tmp_path: Path, name: str, reason: str) -> None:
    write_wav(tmp_path / "Anger_F_A_tarde.wav", seconds=0.05)
    write_wav(tmp_path / name, seconds=0.05)
    assert_scan_stops_at("mesd", tmp_path, name, reason)


def test_skip_mode_accounts_for_every_audio_file(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path)
    folder = tmp_path / "MESD"
    bad = {
        "Joy_C_A_tarde.wav": "unknown emotion code",
        "Anger_X_B_corazón.wav": "unknown voice code",
        "Anger_F_tarde.wav": "naming scheme",
        "Fear_C_B_mañana.wav": "unreadable audio",
    }
    for name in list(bad)[:3]:
        write_wav(folder / name, seconds=0.05)
    write_garbage(folder / "Fear_C_B_mañana.wav")

    result = scan("mesd", tmp_path, on_error="skip")

    assert_every_audio_file_accounted_for(result, tmp_path)
    assert_matches(result.manifest, fixture.expected_rows(), tmp_path, COLUMNS, nfc)
    assert_skip_reasons(result.skipped, bad)
