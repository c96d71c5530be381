"""Shared scanning behaviour (bad files, skip accounting, splits, paths), shown on EmoDB."""

from __future__ import annotations

import importlib
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from ssl_ser import corpora
from ssl_ser.corpora._base import canonical_gender, find_audio, resolve_root
from ssl_ser.errors import CorpusError, CorpusFileError, UnknownChoiceError
from ssl_ser.testing import emodb as fixture
from ssl_ser.testing import write_empty_wav, write_garbage, write_wav

GOOD = ("03a01Fa.wav", "08b10Na.wav")
EMODB_CODES = "W, L, E, A, F, T, N"


def small_tree(root: Path) -> Path:
    for name in GOOD:
        write_wav(root / "wav" / name, 0.05)
    return root


def audio_under(root: Path) -> set[str]:
    """Every .wav under root, found here independently of the reader."""
    return {str(p.resolve()) for p in root.rglob("*.wav")}


# (what to write, relative path, text the raise-mode error must hold)
BAD_FILES = {
    "unreadable": (write_garbage, "wav/03a02Wa.wav", ["03a02Wa.wav", "unreadable audio"]),
    "zero samples": (write_empty_wav, "wav/03a04Wa.wav", ["03a04Wa.wav", "zero samples"]),
    "off pattern": (
        write_wav,
        "wav/notes.wav",
        ["notes.wav", "EmoDB naming scheme", "speaker(2) text(3) emotion(1) take(1)"],
    ),
    "unknown emotion": (
        write_wav,
        "wav/03a01Xa.wav",
        ["03a01Xa.wav", "unknown emotion code 'X'", f"expected one of {EMODB_CODES}"],
    ),
    "duplicate id": (
        write_wav,
        "copy/03a01Fa.wav",
        ["03a01Fa.wav", "duplicate utterance id 'emodb/03a01Fa'", "copy"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_raise_mode_names_the_file_and_what_was_expected(tmp_path: Path, case: str) -> None:
    write, relative, expected = BAD_FILES[case]
    small_tree(tmp_path)
    write(tmp_path / relative)
    with pytest.raises(CorpusFileError) as caught:
        corpora.scan("emodb", tmp_path)
    for text in expected:
        assert text in str(caught.value)
    assert caught.value.path.endswith(relative.split("/")[-1])


def test_skip_mode_accounts_for_every_audio_file(tmp_path: Path) -> None:
    small_tree(tmp_path)
    for write, relative, _ in BAD_FILES.values():
        write(tmp_path / relative)
    (tmp_path / "wav" / "readme.txt").write_text("not audio, not counted")
    result = corpora.scan("emodb", tmp_path, on_error="skip")
    kept, skipped = set(result.manifest["path"]), set(result.skipped["path"])
    assert kept.isdisjoint(skipped)
    assert kept | skipped == audio_under(tmp_path)
    assert sorted(Path(p).name for p in kept) == sorted(GOOD)
    assert len(result.skipped) == len(BAD_FILES)
    assert result.skipped["reason"].str.len().gt(0).all()


def test_raise_mode_counts_the_other_problems(tmp_path: Path) -> None:
    small_tree(tmp_path)
    write_garbage(tmp_path / "wav" / "03a02Wa.wav")
    write_empty_wav(tmp_path / "wav" / "03a04Wa.wav")
    with pytest.raises(CorpusFileError, match="1 more file"):
        corpora.scan("emodb", tmp_path)


def test_load_in_skip_mode_warns_with_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small_tree(tmp_path)
    write_garbage(tmp_path / "wav" / "03a02Wa.wav")
    manifest = corpora.load("emodb", tmp_path, on_error="skip")
    assert len(manifest) == len(GOOD)
    assert "skipped 1 file" in caplog.text


def test_upper_case_suffix_is_audio_and_other_files_are_ignored(tmp_path: Path) -> None:
    write_wav(tmp_path / "wav" / "03a01Fa.WAV", 0.05)
    (tmp_path / "wav" / "03a01Wa.txt").write_text("text")
    manifest = corpora.load("emodb", tmp_path)
    assert manifest["utt_id"].tolist() == ["emodb/03a01Fa"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "no audio files"),
        (lambda root: write_garbage(root / "wav" / "03a02Wa.wav").parent.parent, "no usable"),
    ],
)
def test_unusable_roots_are_corpus_errors(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        corpora.scan("emodb", make(tmp_path), on_error="skip")


def test_unknown_on_error_policy_lists_the_choices(tmp_path: Path) -> None:
    small_tree(tmp_path)
    with pytest.raises(UnknownChoiceError, match="'ignore'.*raise, skip"):
        corpora.scan("emodb", tmp_path, on_error="ignore")


def test_registry_lists_every_corpus_and_refuses_unknown_names() -> None:
    expected = {"cremad", "esd", "subesco", "emodb", "mesd", "emovo", "oreau", "emouerj"}
    assert expected | {"folder", "csv"} == set(corpora.names())
    assert corpora.names()[-2:] == ["folder", "csv"]
    languages = {n: corpora.info(n).language for n in ("emodb", "emovo", "oreau", "emouerj")}
    assert languages == {"emodb": "deu", "emovo": "ita", "oreau": "fra", "emouerj": "por"}
    with pytest.raises(UnknownChoiceError, match="'ravdess'.*emodb"):
        corpora.info("ravdess")


def split_tree(root: Path) -> list[str]:
    fixture.make_tree(root, layout="flat", seconds=0.05)
    return sorted(p.stem for p in (root / "wav" / "wav").glob("*.wav"))


def test_split_files_of_a_flat_layout_set_the_split(tmp_path: Path) -> None:
    stems = split_tree(tmp_path)
    train, val, test = stems[:30], stems[30:40], stems[40:50]
    pd.DataFrame({"file": [f"{s}.wav" for s in train]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"id": val, "note": "x"}).to_csv(tmp_path / "val.csv", index=False)
    windows = [f"wav\\wav\\{s}.wav" for s in test]
    pd.DataFrame({"label": "?", "path": windows}).to_csv(tmp_path / "test.csv", index=False)
    manifest = corpora.load("emodb", tmp_path)
    got = dict(zip(manifest["utt_id"].str.split("/").str[1], manifest["split"], strict=True))
    want = {s: "train" for s in train} | {s: "val" for s in val} | {s: "test" for s in test}
    assert got == {s: want.get(s, "") for s in stems}


def test_split_files_that_disagree_or_name_nothing_are_errors(tmp_path: Path) -> None:
    stems = split_tree(tmp_path)
    pd.DataFrame({"file": stems[:5]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"file": stems[4:8]}).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(CorpusError, match=f"{stems[4]} is listed in both test.csv and train.csv"):
        corpora.load("emodb", tmp_path)
    pd.DataFrame({"file": ["elsewhere.wav"]}).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(CorpusError, match="test.csv has no column naming"):
        corpora.load("emodb", tmp_path)


@pytest.mark.parametrize(("on_disk", "given"), [("NFD", "NFC"), ("NFC", "NFD")])
def test_root_in_either_normalisation_finds_the_files(
    tmp_path: Path, on_disk: str, given: str
) -> None:
    root = tmp_path / unicodedata.normalize(on_disk, "Émodb Größe")
    small_tree(root)
    given_root = tmp_path / unicodedata.normalize(given, "Émodb Größe")
    assert str(given_root) != str(root)
    assert resolve_root(given_root) == root.resolve()
    assert len(corpora.load("emodb", given_root)) == len(GOOD)


def test_found_names_are_nfc_while_paths_stay_as_on_disk(tmp_path: Path) -> None:
    folder = unicodedata.normalize("NFD", "Überspielt")
    path = write_wav(tmp_path / folder / "03a01Fa.wav", 0.05)
    (found,), telephone, problems = find_audio(tmp_path)
    assert problems == []
    assert telephone == []
    assert found.parts == (unicodedata.normalize("NFC", "Überspielt"), "03a01Fa.wav")
    assert found.path == path


@pytest.mark.parametrize(
    ("spelling", "gender"),
    [("F", "F"), (" female ", "F"), ("Femme", "F"), ("w", "F"), ("M", "M"), ("male", "M")]
    + [("Homme", "M"), ("h", "M"), ("child", "child"), ("", "")],
)
def test_canonical_gender_accepts_common_spellings(spelling: str, gender: str) -> None:
    assert canonical_gender(spelling) == gender


def test_canonical_gender_names_the_bad_value_and_the_valid_ones() -> None:
    with pytest.raises(UnknownChoiceError, match="'x' in actors.csv; expected one of f, female"):
        canonical_gender("x", where="actors.csv")


@pytest.mark.parametrize("corpus", ["emodb", "emovo", "oreau", "emouerj"])
def test_fixture_trees_refuse_an_unknown_layout(tmp_path: Path, corpus: str) -> None:
    make_tree = importlib.import_module(f"ssl_ser.testing.{corpus}").make_tree
    with pytest.raises(UnknownChoiceError, match="'nested'.*published, flat"):
        make_tree(tmp_path, layout="nested")
    assert not any(tmp_path.iterdir())
