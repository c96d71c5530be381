"""ESD reader against fixture trees whose expected rows come from the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_ser.corpora import load, scan
from ssl_ser.corpora._base import FoundFile
from ssl_ser.corpora.esd import parse
from ssl_ser.errors import CorpusError
from ssl_ser.testing import esd as fixture
from ssl_ser.testing import write_garbage, write_wav

from .helpers import (
    assert_every_audio_file_accounted_for,
    assert_matches,
    assert_scan_stops_at,
    assert_skip_reasons,
    published_tree,
)

COLUMNS = ["speaker", "gender", "language", "emotion", "emotion_raw", "text", "split"]


published = published_tree("esd", fixture.make_tree)


def found(*parts: str) -> FoundFile:
    return FoundFile(path=Path("/esd", *parts), parts=parts)


def test_published_layout_matches_fixture(published: Path) -> None:
    result = scan("esd", published)
    assert result.skipped.empty
    assert_matches(result.manifest, fixture.expected_rows("published"), published, COLUMNS)
    manifest = result.manifest
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert set(manifest["language"]) == {"cmn", "eng"}
    assert set(manifest.loc[manifest["speaker"] == "esd/0015", "text"]) == {""}


def test_gb18030_transcript_is_decoded(published: Path) -> None:
    raw = (published / "0001" / "0001.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    manifest = load("esd", published)
    text = manifest.set_index("utt_id").loc["esd/0001_000351", "text"]
    assert text == "第351句，说话人0001。"


def test_flat_layout_takes_emotion_from_the_index(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat")
    manifest = load("esd", tmp_path)
    assert_matches(manifest, fixture.expected_rows("flat"), tmp_path, COLUMNS)
    assert (manifest["telephone_path"] != "").all()


@pytest.mark.parametrize(
    ("parts", "emotion", "split"),
    [
        (("0011", "Angry", "0011_000351.wav"), "angry", ""),
        (("Angry", "evaluation", "0011_000351.wav"), "angry", "val"),
        (("ESD", "0002", "Surprise", "test", "0002_001750.wav"), "surprise", "test"),
        (("wav", "wav", "0002_001051.wav"), "sad", ""),
        (("0002_000700.wav",), "angry", ""),
    ],
)
def test_layout_variants(parts: tuple[str, ...], emotion: str, split: str) -> None:
    utterance = parse(found(*parts))
    assert (utterance.emotion, utterance.split) == (emotion, split)


@pytest.mark.parametrize(
    ("relpath", "reason"),
    [
        ("0011/Angry/train/0011_000001.wav", "emotion folder 'Angry' disagrees with utterance"),
        ("0011/Excited/train/0011_000401.wav", "unknown emotion code 'Excited'; expected one of"),
        ("0011/Angry/train/0012_000401.wav", "speaker 0012 in the name but folder '0011'"),
        ("0021/Angry/train/0021_000401.wav", "speaker 0021 outside the ESD range 0001-0020"),
        ("0011/Surprise/train/0011_001751.wav", "index 001751 outside the ESD range"),
        ("0011/Angry/train/0011-000401.wav", "does not match the ESD naming scheme"),
    ],
)
def test_bad_file_stops_the_scan_naming_it(tmp_path: Path, relpath: str, reason: str) -> None:
    write_wav(tmp_path / "0011" / "Angry" / "train" / "0011_000400.wav", seconds=0.05)
    write_wav(tmp_path / relpath, seconds=0.05)
    assert_scan_stops_at("esd", tmp_path, Path(relpath).name, reason)


def test_undecodable_transcript_is_a_corpus_error(tmp_path: Path) -> None:
    write_wav(tmp_path / "0011" / "Angry" / "train" / "0011_000400.wav", seconds=0.05)
    (tmp_path / "0011" / "0011.txt").write_bytes(b"\xff\xff\xff\t\xff\n")
    with pytest.raises(CorpusError, match=r"0011\.txt; tried encodings utf-8-sig, gb18030"):
        scan("esd", tmp_path)


def test_skip_mode_accounts_for_every_audio_file(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path)
    bad = {
        "0011/Angry/train/0011_000002.wav": "disagrees",
        "0011/Excited/train/0011_000402.wav": "unknown emotion code",
        "0015/Sad/test/0016_001060.wav": "speaker 0016 in the name",
        "0015/Sad/test/0015-001060.wav": "naming scheme",
    }
    for relpath in bad:
        write_wav(tmp_path / relpath, seconds=0.05)
    write_garbage(tmp_path / "0015" / "Sad" / "test" / "0015_001061.wav")
    bad["0015/Sad/test/0015_001061.wav"] = "unreadable audio"

    result = scan("esd", tmp_path, on_error="skip")

    assert_every_audio_file_accounted_for(result, tmp_path)
    assert_matches(result.manifest, fixture.expected_rows(), tmp_path, COLUMNS)
    by_path = {str(tmp_path.resolve() / relpath): reason for relpath, reason in bad.items()}
    assert_skip_reasons(result.skipped, by_path, key=str)
