"""CREMA-D reader against fixture trees whose expected rows come from the fixture."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ssl_ser.corpora import load, scan
from ssl_ser.errors import CorpusError
from ssl_ser.testing import cremad as fixture
from ssl_ser.testing import write_empty_wav, write_garbage, write_wav

from .helpers import (
    assert_every_audio_file_accounted_for,
    assert_matches,
    assert_scan_stops_at,
    assert_skip_reasons,
    assert_telephone_copies_paired,
    published_tree,
)

COLUMNS = ["speaker", "gender", "language", "emotion", "emotion_raw", "text", "split", "age"]


published = published_tree("cremad", fixture.make_tree)


def small_tree(root: Path) -> Path:
    """Two good files and the demographics: enough to test one bad file beside them."""
    for name in ("1001_DFA_ANG_XX.wav", "1002_IEO_NEU_XX.wav"):
        write_wav(root / "AudioWAV" / name, seconds=0.05)
    fixture.write_demographics(root / "VideoDemographics.csv")
    return root


def test_published_layout_matches_fixture(published: Path) -> None:
    result = scan("cremad", published)
    assert result.skipped.empty
    assert_matches(result.manifest, fixture.expected_rows("published"), published, COLUMNS)
    assert set(result.manifest["gender"]) == {"F", "M"}
    assert set(result.manifest["emotion"]) == set(fixture.EMOTIONS.values())


def test_flat_layout_pairs_telephone_copies(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat")
    manifest = load("cremad", tmp_path)
    assert_matches(manifest, fixture.expected_rows("flat"), tmp_path, COLUMNS)
    assert_telephone_copies_paired(manifest, tmp_path)


def test_without_demographics_gender_and_age_stay_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fixture.make_tree(tmp_path, demographics=False)
    with caplog.at_level(logging.WARNING, logger="ssl_ser.corpora.cremad"):
        manifest = load("cremad", tmp_path)
    assert len(manifest) == len(fixture.expected_rows())
    assert (manifest["gender"] == "").all()
    assert manifest["age"].isna().all()
    assert "VideoDemographics.csv not found" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("ActorID,Gender\n1001,Male\n", r"lacks column\(s\) Age, Sex"),
        ("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Unknown,X,Y\n", r"Sex 'Unknown'"),
        ("ActorID,Age,Sex,Race,Ethnicity\n1001,old,Male,X,Y\n", r"Age 'old'"),
    ],
)
def test_bad_demographics_file_is_a_corpus_error(tmp_path: Path, content: str, message: str):
    small_tree(tmp_path)
    (tmp_path / "VideoDemographics.csv").write_text(content)
    with pytest.raises(CorpusError, match=message) as error:
        scan("cremad", tmp_path)
    assert "VideoDemographics.csv" in str(error.value)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("1001_DFA_XXX_XX.wav", "unknown emotion code 'XXX'; expected one of ANG, DIS, FEA"),
        ("1001_ABC_ANG_XX.wav", "unknown sentence code 'ABC'; expected one of IEO"),
        ("1001_DFA_ANG_ZZ.wav", "unknown intensity level 'ZZ'; expected one of LO, MD, HI, XX"),
        ("1092_DFA_ANG_XX.wav", "actor 1092 outside the CREMA-D range 1001-1091"),
        ("1000_DFA_ANG_XX.wav", "actor 1000 outside the CREMA-D range 1001-1091"),
        ("1050_DFA_ANG_XX.wav", "actor 1050 not in VideoDemographics.csv"),
        ("1001-DFA-ANG-XX.wav", "does not match the CREMA-D naming scheme"),
        ("1001_DFA_ANG.wav", "does not match the CREMA-D naming scheme"),
    ],
)
def test_bad_file_stops_the_scan_naming_it(tmp_path: Path, name: str, reason: str) -> None:
    small_tree(tmp_path)
    write_wav(tmp_path / "AudioWAV" / name, seconds=0.05)
    assert_scan_stops_at("cremad", tmp_path, name, reason)


def test_skip_mode_accounts_for_every_audio_file(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, demographics=False)
    actors = {**fixture.ACTORS, "1076": ("Female", 25)}
    fixture.write_demographics(tmp_path / "VideoDemographics.csv", actors)
    bad = {
        "1001_DFA_XXX_XX.wav": "unknown emotion code",
        "1050_DFA_ANG_XX.wav": "not in VideoDemographics.csv",
        "1001-DFA-ANG-XX.wav": "naming scheme",
        "1001_TIE_ANG_XX.wav": "unreadable audio",
        "1076_MTI_SAD_XX.wav": "empty audio",
    }
    audio = tmp_path / "AudioWAV"
    for name in list(bad)[:3]:
        write_wav(audio / name, seconds=0.05)
    write_garbage(audio / "1001_TIE_ANG_XX.wav")
    write_empty_wav(audio / "1076_MTI_SAD_XX.wav")

    result = scan("cremad", tmp_path, on_error="skip")

    assert_every_audio_file_accounted_for(result, tmp_path)
    assert_matches(result.manifest, fixture.expected_rows(), tmp_path, COLUMNS)
    assert_skip_reasons(result.skipped, bad)
