"""Manifest schema: validation errors, dtypes, CSV and parquet round-trips, row digest."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from ssl_ser import manifest
from ssl_ser.errors import ManifestError


def rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "utt_id": ["emodb/03a01Fa", "oreau/01a01Ja", "mesd/Anger_C_A_abajo"],
            "corpus": ["emodb", "oreau", "mesd"],
            "path": ["/data/emodb/wav/03a01Fa.wav", "/data/Oréau/01a01Ja.wav", "/m/x.wav"],
            "speaker": ["emodb/03", "oreau/01", ""],
            "gender": ["M", "F", "child"],
            "language": ["deu", "fra", "spa"],
            "emotion": ["happy", "happy", "angry"],
            "emotion_raw": ["F", "J", "Anger"],
            "duration": [1.5, 2.25, 0.75],
            "sample_rate": [16000, 44100, 48000],
            "text": ["Der Lappen liegt auf dem Eisschrank.", "", ""],
            "split": ["", "train", "test"],
            "age": [31.0, float("nan"), 8.0],
            "channel": [-1, 0, -1],
            "telephone_path": ["", "/data/tel/01a01Ja.wav", ""],
        }
    )


def test_empty_manifest_has_the_required_columns_in_order() -> None:
    assert tuple(manifest.empty().columns) == manifest.COLUMNS
    assert manifest.empty().empty


def test_validate_orders_columns_and_normalises_dtypes() -> None:
    raw = rows()[list(reversed(rows().columns))]
    raw.loc[0, "text"] = None
    raw["sample_rate"] = raw["sample_rate"].astype(str)
    out = manifest.validate(raw)
    assert list(out.columns[: len(manifest.COLUMNS)]) == list(manifest.COLUMNS)
    assert out.loc[0, "text"] == ""
    assert out["sample_rate"].dtype == "int64"
    assert out["duration"].dtype == float
    assert out["channel"].tolist() == [-1, 0, -1]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_keeps_every_value(tmp_path: Path, suffix: str) -> None:
    path = manifest.write(rows(), tmp_path / "nested" / f"manifest{suffix}")
    back = manifest.read(path)
    expected = manifest.validate(rows())
    assert list(back.columns) == list(expected.columns)
    for column in expected.columns:
        if column == "age":
            got, want = back[column].tolist(), expected[column].tolist()
            assert [math.isnan(v) for v in got] == [math.isnan(v) for v in want]
            assert [v for v in got if not math.isnan(v)] == [v for v in want if not math.isnan(v)]
        else:
            assert back[column].tolist() == expected[column].tolist(), column
    assert back["speaker"].tolist()[2] == ""  # empty strings do not come back as NaN


def test_csv_read_keeps_codes_that_look_like_numbers_or_missing_values(tmp_path: Path) -> None:
    table = rows()
    table["emotion_raw"] = ["01", "NA", "nan"]
    table["speaker"] = ["emodb/03", "NA", "007"]
    back = manifest.read(manifest.write(table, tmp_path / "m.csv"))
    assert back["emotion_raw"].tolist() == ["01", "NA", "nan"]
    assert back["speaker"].tolist() == ["emodb/03", "NA", "007"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns=["emotion", "split"]), "lacks column\\(s\\) emotion, split"),
        (lambda t: t.assign(utt_id=["a", "b", "a"]), "duplicate utt_id 'a'"),
        (lambda t: t.assign(utt_id=["a", "", "c"]), "empty utt_id"),
        (lambda t: t.assign(emotion=["happy", "joy", "sad"]), "emotion 'joy' of 'oreau/01a01Ja'"),
        (lambda t: t.assign(gender=["M", "female", "F"]), "gender 'female' .* expected one of"),
        (lambda t: t.assign(split=["dev", "", ""]), "split 'dev' of 'emodb/03a01Fa'"),
        (lambda t: t.assign(duration=[1.0, 0.0, 1.0]), "duration '0.0' of 'oreau/01a01Ja'"),
        (lambda t: t.assign(duration=["1.0", "abc", "2"]), "duration 'abc' of 'oreau/01a01Ja'"),
        (lambda t: t.assign(duration=[1.0, 2.0, math.inf]), "duration 'inf' of .* positive"),
        (lambda t: t.assign(sample_rate=[16000, "16k", 8000]), "sample_rate '16k' .* whole"),
        (lambda t: t.assign(sample_rate=[16000, 0, 8000]), "sample_rate '0' of 'oreau/01a01Ja'"),
        (lambda t: t.assign(channel=[0, "x", -1]), "channel 'x' of 'oreau/01a01Ja'.* -1 to"),
        (lambda t: t.assign(channel=[0, 0.5, -1]), "channel '0.5' of 'oreau/01a01Ja'"),
        (lambda t: t.assign(channel=[0, -2, -1]), "channel '-2' of 'oreau/01a01Ja'"),
    ],
)
def test_validate_errors_name_the_column_and_value(change, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        manifest.validate(change(rows()))


def test_write_refuses_an_invalid_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError):
        manifest.write(rows().assign(gender=["x", "F", "M"]), tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_rows_digest_ignores_order_and_paths_but_not_labels() -> None:
    table = rows()
    digest = manifest.rows_digest(table)
    assert manifest.rows_digest(table.iloc[::-1]) == digest
    assert manifest.rows_digest(table.assign(path="/moved")) == digest
    assert manifest.rows_digest(table.assign(emotion=["sad", "happy", "angry"])) != digest
    assert manifest.rows_digest(table.assign(duration=[1.5, 2.25, 0.76])) != digest


def test_missing_channel_means_downmix_and_whole_numbers_pass() -> None:
    table = manifest.validate(
        rows().assign(channel=[0, None, "1"], sample_rate=["16000", 8e3, 48000])
    )
    assert table["channel"].tolist() == [0, manifest.DOWNMIX, 1]
    assert table["sample_rate"].tolist() == [16000, 8000, 48000]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'utt_id,corpus\n"a,b\n', "cannot be read"),
        ("utt_id,corpus\nbl\u00e5,x\n".encode("latin-1"), "cannot be read: 'utf-8' codec"),
    ],
)
def test_read_names_the_file_it_cannot_parse(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "hand-edited.csv"
    path.write_bytes(content)
    with pytest.raises(ManifestError, match=re.escape(f"manifest {path} ") + message):
        manifest.read(path)


def test_read_names_the_file_of_a_schema_error(tmp_path: Path) -> None:
    path = manifest.write(rows(), tmp_path / "m.csv")
    path.write_text(path.read_text().replace("0.75", "abc"))
    with pytest.raises(ManifestError, match=re.escape(f"manifest {path}: duration 'abc'")):
        manifest.read(path)
