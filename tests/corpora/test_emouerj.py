"""emoUERJ reader on fixture trees: gendered speaker ids, fields and bad names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_ser.corpora import load, scan
from ssl_ser.testing import emouerj as fixture
from ssl_ser.testing import write_wav

from .helpers import (
    assert_bad_name_raises_and_skips,
    assert_telephone_copies_paired,
    published_tree,
)

# From the corpus description (zenodo 5427549), written out independently of the reader.
EMOTIONS = {"a": "angry", "h": "happy", "s": "sad", "n": "neutral"}
GENDERS = {"w": "F", "m": "M"}
SECONDS = 0.05


published = published_tree("emouerj", fixture.make_tree, seconds=SECONDS)


def test_published_layout_fields(published: Path) -> None:
    result = scan("emouerj", published)
    assert result.skipped.empty
    manifest = result.manifest
    assert sorted(Path(p).name for p in manifest["path"]) == sorted(fixture.file_names())
    for row in manifest.to_dict("records"):
        stem = Path(row["path"]).stem
        assert row["path"] == str(published.resolve() / "emoUERJ" / f"{stem}.wav")
        assert row["utt_id"] == f"emouerj/{stem}"
        assert row["speaker"] == f"emouerj/{stem[:3]}"
        assert row["gender"] == GENDERS[stem[0]]
        assert (row["emotion"], row["emotion_raw"]) == (EMOTIONS[stem[3]], stem[3])
    assert manifest["language"].eq("por").all()
    assert manifest["text"].eq("").all()
    assert manifest["channel"].eq(-1).all()
    assert manifest["sample_rate"].eq(fixture.SAMPLE_RATE).all()
    assert manifest["duration"].to_numpy() == pytest.approx(SECONDS, abs=1 / fixture.SAMPLE_RATE)


def test_same_number_in_each_gender_is_two_speakers(published: Path) -> None:
    manifest = load("emouerj", published)
    assert sorted(manifest["speaker"].unique()) == sorted(f"emouerj/{s}" for s in fixture.SPEAKERS)
    by_speaker = manifest.groupby("speaker")["gender"].unique()
    assert by_speaker["emouerj/w01"].tolist() == ["F"]
    assert by_speaker["emouerj/m01"].tolist() == ["M"]


def test_flat_layout_pairs_telephone_copies(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat", seconds=SECONDS)
    manifest = load("emouerj", tmp_path)
    assert len(manifest) == len(fixture.file_names())
    assert_telephone_copies_paired(manifest, tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("w01z01.wav", "unknown emotion code 'z'; expected one of a, h, s, n"),
        ("x01a01.wav", "emoUERJ naming scheme: w04a11.wav"),
        ("w1a01.wav", "emoUERJ naming scheme"),
    ],
)
def test_bad_names_are_errors_naming_the_file(tmp_path: Path, name: str, message: str) -> None:
    write_wav(tmp_path / "w01a01.wav", SECONDS)
    write_wav(tmp_path / name, SECONDS)
    assert_bad_name_raises_and_skips("emouerj", tmp_path, name, message)
