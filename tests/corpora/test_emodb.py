"""EmoDB reader on fixture trees: every field checked against a reading of the names here."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_ser.corpora import scan
from ssl_ser.errors import CorpusFileError
from ssl_ser.testing import emodb as fixture
from ssl_ser.testing import write_wav

from .helpers import published_tree

# Written out from the corpus documentation, independently of the reader's tables.
EMOTIONS = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
GENDERS = {"03": "M", "10": "M", "08": "F", "16": "F"}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
SECONDS = 0.1


def expected(stem: str) -> dict:
    """Manifest values of one file, read from the name by position (03 a01 F a)."""
    speaker, text, code = stem[:2], stem[2:5], stem[5]
    return {
        "utt_id": f"emodb/{stem}",
        "corpus": "emodb",
        "speaker": f"emodb/{speaker}",
        "gender": GENDERS[speaker],
        "language": "deu",
        "emotion": EMOTIONS[code],
        "emotion_raw": code,
        "text": TEXTS[text],
        "split": "",
        "channel": -1,
    }


published = published_tree("emodb", fixture.make_tree, seconds=SECONDS)


def test_published_layout_fields(published: Path) -> None:
    result = scan("emodb", published)
    manifest = result.manifest
    assert result.skipped.empty
    assert sorted(Path(p).name for p in manifest["path"]) == sorted(fixture.file_names())
    for row in manifest.to_dict("records"):
        stem = Path(row["path"]).stem
        assert {k: row[k] for k in expected(stem)} == expected(stem)
        assert row["path"] == str(published.resolve() / "wav" / f"{stem}.wav")
        assert row["telephone_path"] == ""
    assert manifest["sample_rate"].eq(16000).all()
    assert manifest["duration"].to_numpy() == pytest.approx(SECONDS)
    assert set(manifest["emotion"]) == set(EMOTIONS.values())
    assert manifest["speaker"].nunique() == len(GENDERS)


def test_flat_layout_matches_published_and_pairs_telephone_copies(
    published: Path, tmp_path: Path
) -> None:
    fixture.make_tree(tmp_path, layout="flat", seconds=SECONDS)
    flat = scan("emodb", tmp_path).manifest.set_index("utt_id").sort_index()
    clean = scan("emodb", published).manifest.set_index("utt_id").sort_index()
    fields = ["speaker", "gender", "language", "emotion", "text", "duration", "sample_rate"]
    assert flat[fields].equals(clean[fields])
    telephone = tmp_path.resolve() / "wav_telephone" / "wav_telephone"
    for utt_id, row in flat.iterrows():
        stem = utt_id.split("/")[1]
        assert row["path"] == str(tmp_path.resolve() / "wav" / "wav" / f"{stem}.wav")
        assert row["telephone_path"] == str(telephone / f"{stem}.wav")


def test_orphan_telephone_copy_is_skipped_with_reason(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat", seconds=0.05)
    orphan = write_wav(tmp_path / "wav_telephone" / "wav_telephone" / "15b03Wa.wav", 0.05, 8000)
    result = scan("emodb", tmp_path, on_error="skip")
    assert len(result.manifest) == len(fixture.file_names())
    assert result.skipped.to_dict("records") == [
        {"path": str(orphan.resolve()), "reason": "telephone copy without a clean original"}
    ]
    with pytest.raises(CorpusFileError, match="15b03Wa.wav: telephone copy without"):
        scan("emodb", tmp_path)


def test_unlisted_speaker_and_text_stay_empty(tmp_path: Path) -> None:
    write_wav(tmp_path / "wav" / "99a77Wa.wav", 0.05)
    row = scan("emodb", tmp_path).manifest.iloc[0]
    assert (row["speaker"], row["gender"], row["text"], row["emotion"]) == (
        "emodb/99",
        "",
        "",
        "angry",
    )
