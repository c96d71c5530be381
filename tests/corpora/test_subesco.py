"""SUBESCO reader against fixture trees whose expected rows come from the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_ser.corpora import info, load, scan
from ssl_ser.testing import subesco as fixture
from ssl_ser.testing import write_empty_wav, write_garbage, write_wav

from .helpers import (
    assert_every_audio_file_accounted_for,
    assert_matches,
    assert_scan_stops_at,
    assert_skip_reasons,
    published_tree,
)

COLUMNS = ["speaker", "gender", "language", "emotion", "emotion_raw", "text", "split"]


published = published_tree("subesco", fixture.make_tree)


def test_published_layout_matches_fixture(published: Path) -> None:
    result = scan("subesco", published)
    assert result.skipped.empty
    assert_matches(result.manifest, fixture.expected_rows("published"), published, COLUMNS)
    assert set(result.manifest["sample_rate"]) == {44100, 48000}
    assert set(result.manifest["emotion"]) == set(info("subesco").emotions.values())


def test_the_release_file_with_a_stray_bracket_is_read_as_the_take_it_is(published: Path) -> None:
    rows = load("subesco", published).set_index("utt_id")
    row = rows.loc["subesco/F_02_MONIKA_S_2_SURPRISE_3]"]
    assert Path(row["path"]).name == "F_02_MONIKA_S_2_SURPRISE_3].wav"
    assert (row["speaker"], row["gender"]) == ("subesco/F_02", "F")
    assert (row["emotion"], row["emotion_raw"]) == ("surprise", "SURPRISE")
    assert row["sample_rate"] == 48000  # F_02's rate, like her other files


def test_flat_layout_pairs_telephone_copies(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat")
    manifest = load("subesco", tmp_path)
    assert_matches(manifest, fixture.expected_rows("flat"), tmp_path, COLUMNS)
    names = [Path(p).name for p in manifest["telephone_path"]]
    assert names == [Path(p).name for p in manifest["path"]]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("F_01_OISHI_S_1_EXCITED_1.wav", "unknown emotion code 'EXCITED'; expected one of ANGRY"),
        ("F01_OISHI_S_1_ANGRY_1.wav", "does not match the SUBESCO naming scheme"),
        ("X_01_OISHI_S_1_ANGRY_1.wav", "does not match the SUBESCO naming scheme"),
        ("F_01_OISHI_1_ANGRY_1.wav", "does not match the SUBESCO naming scheme"),
        # near the release's known anomaly, but not it: still off the scheme
        ("F_02_MONIKA_S_2_SURPRISE_4].wav", "does not match the SUBESCO naming scheme"),
        ("F_02_MONIKA_S_2_SURPRISE_3]].wav", "does not match the SUBESCO naming scheme"),
        ("F_01_OISHI_S_2_SURPRISE_3].wav", "does not match the SUBESCO naming scheme"),
    ],
)
def test_bad_file_stops_the_scan_naming_it(tmp_path: Path, name: str, reason: str) -> None:
    write_wav(tmp_path / "F_02_MONIKA_S_1_NEUTRAL_5.wav", seconds=0.05, sample_rate=48000)
    write_wav(tmp_path / name, seconds=0.05)
    assert_scan_stops_at("subesco", tmp_path, name, reason)


def test_skip_mode_accounts_for_every_audio_file(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path)
    folder = tmp_path / "SUBESCO"
    bad = {
        "F_01_OISHI_S_2_EXCITED_1.wav": "unknown emotion code",
        "F01_OISHI_S_2_ANGRY_1.wav": "naming scheme",
        "M_01_RAKIB_S_2_ANGRY_1.wav": "unreadable audio",
        "M_01_RAKIB_S_2_SAD_1.wav": "empty audio",
    }
    write_wav(folder / "F_01_OISHI_S_2_EXCITED_1.wav", seconds=0.05)
    write_wav(folder / "F01_OISHI_S_2_ANGRY_1.wav", seconds=0.05)
    write_garbage(folder / "M_01_RAKIB_S_2_ANGRY_1.wav")
    write_empty_wav(folder / "M_01_RAKIB_S_2_SAD_1.wav")

    result = scan("subesco", tmp_path, on_error="skip")

    assert_every_audio_file_accounted_for(result, tmp_path)
    assert_matches(result.manifest, fixture.expected_rows(), tmp_path, COLUMNS)
    assert_skip_reasons(result.skipped, bad)
