"""Generic readers: emotion folders (`folder`) and a user CSV (`csv`)."""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from ssl_ser.corpora import load, scan
from ssl_ser.errors import ConfigError, CorpusError, CorpusFileError, UnknownChoiceError
from ssl_ser.testing import write_garbage, write_wav

SECONDS = 0.05

# relative path under the root -> (emotion, speaker) the folder reader should find
FOLDER_TREE = {
    "Angry/spk1_001.wav": ("angry", "spk1"),
    "happy/session 2/deep/spk2_002.wav": ("happy", "spk2"),
    "Sadness/spk1_003.wav": ("sad", "spk1"),
    unicodedata.normalize("NFD", "Colère/spk3_004.wav"): ("angry", "spk3"),
    "NEUTRAL/spk2_005.wav": ("neutral", "spk2"),
}
MAPPING = {"colère": "angry"}


def folder_tree(root: Path) -> Path:
    for i, relative in enumerate(FOLDER_TREE):
        write_wav(root / relative, SECONDS, 16000, seed=i)
    return root


def test_folder_reader_maps_folders_and_speakers(tmp_path: Path) -> None:
    root = folder_tree(tmp_path / "My Corpus")
    manifest = load(
        "folder",
        root,
        mapping=MAPPING,
        speaker_pattern=r"^(?P<speaker>spk\d+)_",
        language="nld",
    )
    got = manifest.set_index("utt_id")
    assert sorted(got.index) == sorted(f"my-corpus/{Path(r).stem}" for r in FOLDER_TREE)
    for relative, (emotion, speaker) in FOLDER_TREE.items():
        row = got.loc[f"my-corpus/{Path(relative).stem}"]
        assert row["path"] == str(root.resolve() / relative)
        assert (row["emotion"], row["speaker"]) == (emotion, f"my-corpus/{speaker}")
        assert row["emotion_raw"] == unicodedata.normalize("NFC", relative.split("/")[0])
    assert manifest["corpus"].eq("my-corpus").all()
    assert manifest["language"].eq("nld").all()
    assert manifest["duration"].to_numpy() == pytest.approx(SECONDS)


def test_folder_mapping_keys_match_in_either_normalisation(tmp_path: Path) -> None:
    folder_tree(tmp_path)
    decomposed = {unicodedata.normalize("NFD", k): v for k, v in MAPPING.items()}
    manifest = load("folder", tmp_path, mapping=decomposed, name="mine")
    assert manifest.set_index("utt_id").loc["mine/spk3_004", "emotion"] == "angry"
    assert manifest["speaker"].eq("").all()
    assert manifest["language"].eq("").all()


def test_folder_unknown_emotion_folder_names_folder_and_valid_names(tmp_path: Path) -> None:
    folder_tree(tmp_path)
    with pytest.raises(CorpusFileError, match="unknown emotion folder 'Colère'") as caught:
        scan("folder", tmp_path)
    for name in ("angry", "happy", "calm", "anger", "sadness"):
        assert name in str(caught.value)
    assert Path(caught.value.path).name == "spk3_004.wav"


def test_folder_skip_mode_accounts_for_every_file(tmp_path: Path) -> None:
    folder_tree(tmp_path)
    loose = write_wav(tmp_path / "loose.wav", SECONDS)
    unknown = write_wav(tmp_path / "whatever" / "x.wav", SECONDS)
    broken = write_garbage(tmp_path / "angry" / "spk9_broken.wav")
    no_speaker = write_wav(tmp_path / "calm" / "anonymous.wav", SECONDS)
    result = scan(
        "folder",
        tmp_path,
        on_error="skip",
        mapping=MAPPING,
        speaker_pattern=r"(?P<speaker>spk\d+)",
    )
    reasons = dict(zip(result.skipped["path"], result.skipped["reason"], strict=True))
    assert set(reasons) == {str(p.resolve()) for p in (loose, unknown, broken, no_speaker)}
    assert "directly under the corpus root" in reasons[str(loose.resolve())]
    assert "unknown emotion folder 'whatever'" in reasons[str(unknown.resolve())]
    assert "unreadable audio" in reasons[str(broken.resolve())]
    assert "does not match speaker pattern" in reasons[str(no_speaker.resolve())]
    everything = {str(p.resolve()) for p in tmp_path.rglob("*.wav")}
    assert set(result.manifest["path"]) | set(reasons) == everything
    assert len(result.manifest) == len(FOLDER_TREE)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"speaker_pattern": "(unclosed"}, ConfigError, "not a regular expression"),
        ({"speaker_pattern": r"spk\d+"}, ConfigError, r"lacks a named group \(\?P<speaker>"),
        ({"mapping": {"colère": "furious"}}, UnknownChoiceError, "'furious' in mapping of"),
        ({"name": "a/b"}, ConfigError, "corpus name 'a/b'"),
    ],
)
def test_folder_bad_options_are_refused(
    tmp_path: Path, options: dict, error: type, message: str
) -> None:
    folder_tree(tmp_path)
    with pytest.raises(error, match=message):
        scan("folder", tmp_path, **options)


def csv_corpus(root: Path) -> Path:
    """Audio in several places and a listing with every optional column in use."""
    write_wav(root / "clips" / "a1.wav", SECONDS, 16000, seed=1)
    write_wav(root / "clips" / "sub" / "b2.wav", 0.08, 8000, seed=2)
    elsewhere = write_wav(root.parent / "elsewhere" / "c3.wav", SECONDS, 22050, seed=3)
    write_wav(root / "phone" / "a1.wav", SECONDS, 8000)
    listing = pd.DataFrame(
        {
            "Path": ["clips/a1.wav", "clips\\sub\\b2.wav", str(elsewhere)],
            "emotion": ["Anger", "joie", "SAD"],
            "speaker": ["spk1", "my-list/spk2", ""],
            "gender": ["female", "M", ""],
            "split": ["train", "dev", ""],
            "utt_id": ["", "custom", ""],
            "age": ["31", "", ""],
            "channel": ["", "0", ""],
            "telephone_path": ["phone/a1.wav", "", ""],
            "duration": ["99", "99", "99"],
            "notes": ["ignored", "", ""],
        }
    )
    listing.to_csv(root / "My List.csv", index=False)
    return root / "My List.csv"


def test_csv_reader_fills_defaults_and_reads_headers(tmp_path: Path) -> None:
    csv_path = csv_corpus(tmp_path / "corpus")
    manifest = load("csv", csv_path, mapping={"joie": "happy"}).set_index("utt_id")
    assert manifest.index.tolist() == ["my-list/a1", "my-list/custom", "my-list/c3"]
    a1, b2, c3 = (manifest.iloc[i] for i in range(3))
    assert a1["path"] == str(tmp_path.resolve() / "corpus" / "clips" / "a1.wav")
    assert b2["path"] == str(tmp_path.resolve() / "corpus" / "clips" / "sub" / "b2.wav")
    assert c3["path"] == str(tmp_path.resolve() / "elsewhere" / "c3.wav")
    assert manifest["emotion"].tolist() == ["angry", "happy", "sad"]
    assert manifest["emotion_raw"].tolist() == ["Anger", "joie", "SAD"]
    assert manifest["speaker"].tolist() == ["my-list/spk1", "my-list/spk2", ""]
    assert manifest["gender"].tolist() == ["F", "M", ""]
    assert manifest["split"].tolist() == ["train", "val", ""]
    assert manifest["sample_rate"].tolist() == [16000, 8000, 22050]
    assert manifest["duration"].to_numpy() == pytest.approx([SECONDS, 0.08, SECONDS], abs=1e-4)
    assert manifest["channel"].tolist() == [-1, 0, -1]
    assert a1["age"] == 31 and math.isnan(b2["age"])
    assert a1["telephone_path"] == str(tmp_path.resolve() / "corpus" / "phone" / "a1.wav")
    assert manifest["corpus"].eq("my-list").all()
    assert "notes" not in manifest.columns


def test_csv_missing_file_names_the_listing(tmp_path: Path) -> None:
    csv_path = csv_corpus(tmp_path)
    listing = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    listing.loc[len(listing)] = ["clips/gone.wav", "happy"] + [""] * (len(listing.columns) - 2)
    listing.to_csv(csv_path, index=False)
    with pytest.raises(CorpusFileError, match=r"listed in My List.csv but not found \(line 5"):
        scan("csv", csv_path, mapping={"joie": "happy"})


def test_csv_skip_mode_accounts_for_every_row(tmp_path: Path) -> None:
    for name in ("a.wav", "b.wav", "c.wav"):
        write_wav(tmp_path / name, SECONDS)
    write_garbage(tmp_path / "broken.wav")
    rows = [
        ("a.wav", "happy", ""),
        ("b.wav", "furious", ""),  # unknown emotion
        ("missing.wav", "sad", ""),  # not found
        ("broken.wav", "sad", ""),  # unreadable
        ("c.wav", "sad", "x"),  # bad gender
        ("a.wav", "angry", ""),  # duplicate id
    ]
    pd.DataFrame(rows, columns=["path", "emotion", "gender"]).to_csv(
        tmp_path / "list.csv", index=False
    )
    result = scan("csv", tmp_path / "list.csv", on_error="skip", name="demo")
    assert result.manifest["utt_id"].tolist() == ["demo/a"]
    reasons = result.skipped["reason"].tolist()
    assert len(result.manifest) + len(result.skipped) == len(rows)
    assert "emotion 'furious' on line 3 of list.csv" in reasons[0]
    assert "listed in list.csv but not found" in reasons[1]
    assert "unreadable audio" in reasons[2]
    assert "gender 'x' on line 6" in reasons[3]
    assert "duplicate utterance id 'demo/a'" in reasons[4]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,label\na.wav,happy\n", "lacks column\\(s\\) path, emotion"),
        ("path\na.wav\n", "lacks column\\(s\\) emotion; required: path, emotion"),
        ("", "cannot read"),
    ],
)
def test_csv_unusable_listing_is_a_corpus_error(tmp_path: Path, content: str, message: str) -> None:
    write_wav(tmp_path / "a.wav", SECONDS)
    (tmp_path / "list.csv").write_text(content)
    with pytest.raises(CorpusError, match=message):
        scan("csv", tmp_path / "list.csv")


def test_csv_root_must_be_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        scan("csv", tmp_path / "absent.csv")
    with pytest.raises(CorpusError, match="not a file"):
        scan("csv", tmp_path)


def test_csv_corpus_column_wins_per_row(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", SECONDS)
    write_wav(tmp_path / "b.wav", SECONDS)
    (tmp_path / "list.csv").write_text(
        "path,emotion,corpus,speaker\na.wav,sad,,s1\nb.wav,sad,ravdess,ravdess/s2\n"
    )
    manifest = load("csv", tmp_path / "list.csv", name="mine")
    assert manifest["utt_id"].tolist() == ["mine/a", "ravdess/b"]
    assert manifest["corpus"].tolist() == ["mine", "ravdess"]
    assert manifest["speaker"].tolist() == ["mine/s1", "ravdess/s2"]


def test_folder_repeated_stems_get_path_ids_and_unique_stems_keep_theirs(tmp_path: Path) -> None:
    """joy/a_1.wav and rage/a_1.wav are two utterances; b.wav keeps its stem id."""
    for i, relative in enumerate(("happy/a_1.wav", "angry/x/a_1.wav", "happy/b.wav")):
        write_wav(tmp_path / relative, SECONDS, 16000, seed=i)
    write_wav(tmp_path / "angry" / "x" / "wav_telephone" / "a_1.wav", SECONDS, 8000, seed=5)
    got = load("folder", tmp_path, name="c").set_index("utt_id")
    assert sorted(got.index) == ["c/angry/x/a_1", "c/b", "c/happy/a_1"]
    assert got.loc["c/angry/x/a_1", "emotion"] == "angry"
    assert got.loc["c/happy/a_1", "path"] == str(tmp_path.resolve() / "happy" / "a_1.wav")
    assert got.loc["c/angry/x/a_1", "telephone_path"].endswith("x/wav_telephone/a_1.wav")
    assert got.loc["c/happy/a_1", "telephone_path"] == ""
    again = load("folder", tmp_path, name="c")
    assert again["utt_id"].tolist() == got.index.tolist()
