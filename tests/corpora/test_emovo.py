"""EMOVO reader on fixture trees: fields, the channel-0 policy and bad names."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from ssl_ser.corpora import load, scan
from ssl_ser.testing import emovo as fixture
from ssl_ser.testing import write_wav

from .helpers import (
    assert_bad_name_raises_and_skips,
    assert_telephone_copies_paired,
    published_tree,
)

# From the EMOVO documentation, written out independently of the reader.
EMOTIONS = {
    "dis": "disgust",
    "gio": "happy",
    "pau": "fear",
    "rab": "angry",
    "sor": "surprise",
    "tri": "sad",
    "neu": "neutral",
}
TEXTS = {
    "b1": "Gli operai si alzano presto.",
    "l3": "Un attimo dopo s'è incamminato... ed è inciampato.",
    "n5": "Uno quarantatré dieci mille cinquantasette venti.",
    "d2": "Porti con te quella cosa?",
}
SECONDS = 0.05


published = published_tree("emovo", fixture.make_tree, seconds=SECONDS)


def test_published_layout_fields(published: Path) -> None:
    result = scan("emovo", published)
    assert result.skipped.empty
    manifest = result.manifest
    assert len(manifest) == len(fixture.file_names())
    for row in manifest.to_dict("records"):
        emotion, speaker, sentence = Path(row["path"]).stem.split("-")
        assert row["path"] == str(
            published.resolve() / speaker / f"{emotion}-{speaker}-{sentence}.wav"
        )
        assert row["utt_id"] == f"emovo/{emotion}-{speaker}-{sentence}"
        assert row["speaker"] == f"emovo/{speaker}"
        assert row["gender"] == {"f": "F", "m": "M"}[speaker[0]]
        assert (row["emotion"], row["emotion_raw"]) == (EMOTIONS[emotion], emotion)
        assert row["text"] == TEXTS[sentence]
    assert manifest["language"].eq("ita").all()
    assert manifest["sample_rate"].eq(48000).all()
    assert manifest["duration"].to_numpy() == pytest.approx(SECONDS)
    assert manifest["speaker"].nunique() == 6
    assert set(manifest["emotion"]) == set(EMOTIONS.values())


def test_two_channel_recordings_are_read_from_channel_zero(published: Path) -> None:
    manifest = load("emovo", published)
    assert {sf.info(p).channels for p in manifest["path"]} == {2}
    assert manifest["channel"].tolist() == [0] * len(manifest)


def test_flat_layout_pairs_telephone_copies(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat", seconds=SECONDS)
    manifest = load("emovo", tmp_path)
    assert len(manifest) == len(fixture.file_names())
    assert_telephone_copies_paired(manifest, tmp_path)
    assert manifest["channel"].eq(0).all()
    assert manifest["speaker"].nunique() == 6


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("xyz-f1-b1.wav", "unknown emotion code 'xyz'; expected one of dis, gio, pau, rab, sor"),
        ("dis_f1_b1.wav", "EMOVO naming scheme: f1/dis-f1-b1.wav"),
        ("dis-f1-q1.wav", "EMOVO naming scheme"),
    ],
)
def test_bad_names_are_errors_naming_the_file(tmp_path: Path, name: str, message: str) -> None:
    write_wav(tmp_path / "f1" / "dis-f1-b1.wav", SECONDS, channels=2)
    write_wav(tmp_path / "f1" / name, SECONDS, channels=2)
    assert_bad_name_raises_and_skips("emovo", tmp_path, name, message)
