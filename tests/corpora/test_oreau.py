"""Oréau reader: nested non-ASCII folders in NFC and NFD, actors.csv genders, bad names."""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path

import pytest

from ssl_ser.corpora import load, scan
from ssl_ser.errors import CorpusError
from ssl_ser.testing import oreau as fixture
from ssl_ser.testing import write_wav

from .helpers import assert_bad_name_raises_and_skips, assert_telephone_copies_paired

# From the corpus description, written out independently of the reader.
EMOTIONS = {
    "C": "angry",
    "T": "sad",
    "J": "happy",
    "P": "fear",
    "D": "disgust",
    "S": "surprise",
    "N": "neutral",
}
SECONDS = 0.05


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("oreau") / nfd("Oréau")
    fixture.make_tree(root, seconds=SECONDS)
    return root


def test_published_layout_fields(published: Path) -> None:
    result = scan("oreau", published)
    assert result.skipped.empty
    manifest = result.manifest
    assert sorted(Path(p).name for p in manifest["path"]) == sorted(fixture.file_names())
    for row in manifest.to_dict("records"):
        stem = Path(row["path"]).stem
        speaker, code = stem[:2], stem[5]
        assert row["utt_id"] == f"oreau/{stem}"
        assert row["speaker"] == f"oreau/{speaker}"
        assert row["gender"] == fixture.SPEAKERS[speaker]
        assert (row["emotion"], row["emotion_raw"]) == (EMOTIONS[code], code)
        assert Path(row["path"]).is_file()
    assert manifest["language"].eq("fra").all()
    assert manifest["text"].eq("").all()
    assert manifest["sample_rate"].eq(fixture.SAMPLE_RATE).all()
    assert manifest["duration"].to_numpy() == pytest.approx(SECONDS, abs=1 / fixture.SAMPLE_RATE)


def test_the_release_files_with_session_letter_z_are_read_as_speaker_07(published: Path) -> None:
    rows = load("oreau", published).set_index("utt_id")
    for stem in ("07z03Sa", "07z04Sa"):
        row = rows.loc[f"oreau/{stem}"]
        assert Path(row["path"]).name == f"{stem}.wav"
        assert (row["speaker"], row["gender"]) == ("oreau/07", fixture.SPEAKERS["07"])
        assert (row["emotion"], row["emotion_raw"]) == ("surprise", "S")
    # the same speaker as 07's regular files, so speaker-independent splits keep them together
    assert rows.loc["oreau/07a01Ca", "speaker"] == "oreau/07"


def test_fixture_really_mixes_nfd_and_nfc_folders(published: Path) -> None:
    paths = load("oreau", published)["path"]
    decomposed = [p for p in paths if nfd("Émotions") in p]
    composed = [p for p in paths if nfc("Émotions") in p]
    names = fixture.file_names()
    assert len(decomposed) == sum(fixture.SPEAKERS[n[:2]] == "F" for n in names) > 0
    assert len(composed) == sum(fixture.SPEAKERS[n[:2]] == "M" for n in names) > 0
    assert len(decomposed) + len(composed) == len(paths)
    assert all("Femmes" in p for p in decomposed) and all("Hommes" in p for p in composed)


@pytest.mark.parametrize(("on_disk", "given"), [(nfd, nfc), (nfc, nfd)])
def test_root_in_one_normalisation_finds_files_in_the_other(tmp_path: Path, on_disk, given) -> None:
    fixture.make_tree(tmp_path / on_disk("Oréau"), seconds=SECONDS)
    manifest = load("oreau", str(tmp_path / given("Oréau")))
    assert len(manifest) == len(fixture.file_names())
    assert manifest["gender"].ne("").all()


def test_flat_layout_pairs_telephone_copies(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, layout="flat", seconds=SECONDS)
    manifest = load("oreau", tmp_path)
    assert_telephone_copies_paired(manifest, tmp_path)
    names = [Path(p).name for p in manifest["path"]]
    assert manifest["gender"].tolist() == [fixture.SPEAKERS[n[:2]] for n in names]


def test_without_actors_csv_genders_stay_empty(tmp_path: Path) -> None:
    fixture.make_tree(tmp_path, seconds=SECONDS, actors=False)
    manifest = load("oreau", tmp_path)
    assert manifest["gender"].eq("").all()
    assert manifest["speaker"].nunique() == len(fixture.SPEAKERS)


def small_tree(root: Path, actors: str, where: str = "actors.csv") -> Path:
    write_wav(root / "Émotions" / "01a01Ja.wav", SECONDS)
    write_wav(root / "Émotions" / "10a01Ca.wav", SECONDS)
    (root / where).parent.mkdir(parents=True, exist_ok=True)
    (root / where).write_text(actors, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "actors",
    [
        "speaker,gender\n01,F\n10,M\n",
        "Actor ID\tSex\nactor 1\tfemale\nactor 10\tmale\n",
        "id;genre\n1;w\n10;m\n",
        "Locuteur;Âge;Sexe\n01;30;Femme\n10;41;Homme\n;;\n",
    ],
)
def test_actors_csv_is_read_liberally(tmp_path: Path, actors: str) -> None:
    manifest = load("oreau", small_tree(tmp_path, actors, where="docs/deep/actors.csv"))
    assert dict(zip(manifest["speaker"], manifest["gender"], strict=True)) == {
        "oreau/01": "F",
        "oreau/10": "M",
    }


@pytest.mark.parametrize(
    ("actors", "message"),
    [
        ("name,age\nAnne,30\n", "expected a speaker column .* and a gender column"),
        ("speaker\n01\n", "has columns 'speaker'; expected a speaker column"),
        ("", "cannot read .* as CSV"),
        ("speaker,gender\n01,X\n", "speaker '01'.*unknown gender 'X'"),
        ("speaker,gender\nanne,F\n", "speaker 'anne' holds no speaker number"),
        ("speaker,gender\n01,F\n1,M\n", "speaker 01 is listed with two genders"),
    ],
)
def test_unusable_actors_csv_is_a_corpus_error_naming_the_file(
    tmp_path: Path, actors: str, message: str
) -> None:
    small_tree(tmp_path, actors)
    with pytest.raises(CorpusError, match=message) as caught:
        scan("oreau", tmp_path)
    assert str(tmp_path / "actors.csv") in str(caught.value)


def test_two_actors_files_that_disagree_are_an_error(tmp_path: Path) -> None:
    small_tree(tmp_path, "speaker,gender\n01,F\n")
    (tmp_path / "Émotions" / "actors.csv").write_text("speaker,gender\n01,M\n")
    with pytest.raises(CorpusError, match="speaker 01 is F in .* but M in"):
        scan("oreau", tmp_path)


def test_speaker_missing_from_actors_csv_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small_tree(tmp_path, "speaker,gender\n01,F\n")
    with caplog.at_level(logging.WARNING):
        manifest = load("oreau", tmp_path)
    assert manifest.set_index("speaker")["gender"].to_dict() == {"oreau/01": "F", "oreau/10": ""}
    assert "oreau/10" in caplog.text and "actors.csv" in caplog.text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("01a01Xa.wav", "unknown emotion code 'X'; expected one of C, T, J, P, D, S, N"),
        ("01b01Ja.wav", "Oréau naming scheme"),
        ("1a01Ja.wav", "Oréau naming scheme"),
        # near the release's known anomalies (07z03Sa, 07z04Sa), but not them
        ("07z05Sa.wav", "Oréau naming scheme"),
        ("08z03Sa.wav", "Oréau naming scheme"),
        ("07z03Ca.wav", "Oréau naming scheme"),
        ("07y03Sa.wav", "Oréau naming scheme"),
    ],
)
def test_bad_names_are_errors_naming_the_file(tmp_path: Path, name: str, message: str) -> None:
    small_tree(tmp_path, "speaker,gender\n01,F\n10,M\n")
    write_wav(tmp_path / nfd("Émotions") / name, SECONDS)
    result = assert_bad_name_raises_and_skips("oreau", tmp_path, name, message)
    assert len(result.manifest) == 2
