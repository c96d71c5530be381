"""The cache knows which audio each row came from: changed audio is extracted again.

Issue 9, point 2: audio replaced under the same name (even with a new duration)
was served its old features. Each row now records a fingerprint of the file read
(size, modification time, BLAKE2b); ``extract`` re-extracts rows whose audio changed.
"""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest

from ssl_ser import cache, fingerprint
from ssl_ser.cache import layout
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.testing import write_wav, written_duration

from .helpers import make_manifest

MFCC = ExtractorConfig(model="mfcc")
RATE = 16000


def replace_audio(table, index: int, seconds: float, frequency: float = 900.0):
    """Write other audio under row `index`'s file name; the manifest gets its new duration."""
    path = table.loc[index, "path"]
    old = os.stat(path)
    write_wav(path, seconds=seconds, sample_rate=RATE, frequency=frequency, seed=99)
    # a later time than the old file's, as any real rewrite gives (coarse clocks aside)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000))
    table = table.copy()
    table.loc[index, "duration"] = written_duration(seconds, RATE)
    return table


def features(path, ids, pooling="mean") -> np.ndarray:
    with cache.open(path) as reader:
        return reader.read_rows(ids, pooling)


@pytest.mark.parametrize("model", ["mfcc", "wav2vec2-group"])
@pytest.mark.parametrize("new_seconds", [0.9, 0.6], ids=["new-duration", "same-size"])
def test_changed_audio_under_the_same_name_is_extracted_again(
    tmp_path, model_dirs, caplog, model, new_seconds
):
    config = MFCC if model == "mfcc" else ExtractorConfig(model=str(model_dirs[model]))
    table = make_manifest(tmp_path / "audio", [0.5, 0.6, 0.7, 0.8])
    (first,) = extract(table, config, tmp_path / "cache", workers=0)
    ids = table["utt_id"].tolist()
    before = features(first.path, ids)
    size = os.stat(table.loc[1, "path"]).st_size
    table = replace_audio(table, 1, new_seconds)
    assert (os.stat(table.loc[1, "path"]).st_size == size) == (new_seconds == 0.6)
    with caplog.at_level(logging.INFO, logger="ssl_ser.progress"):
        (again,) = extract(table, config, tmp_path / "cache", workers=0)
    assert (again.extracted, again.already_done) == (1, 3)
    (fresh,) = extract(table, config, tmp_path / "fresh", workers=0)
    for pooling in ("mean", "std"):
        expected = features(fresh.path, ids, pooling)
        # mfcc: bit for bit; a model in float16 storage: up to batch-composition rounding
        tolerance = 0 if model == "mfcc" else 1e-3 * np.abs(expected).max()
        np.testing.assert_allclose(
            features(again.path, ids, pooling), expected, rtol=0, atol=tolerance
        )
    assert again.changed == 1
    assert "1 utterance(s) changed since they were extracted; re-extracting" in caplog.text
    assert "1 changed since extraction" in again.line()
    after = features(again.path, ids)
    assert np.abs(after[1] - before[1]).max() > 0.01  # the stale features are gone
    np.testing.assert_array_equal(after[[0, 2, 3]], before[[0, 2, 3]])
    with cache.open(again.path) as reader:
        stored = reader.fingerprints[reader.ids.index(ids[1])]
    assert layout.fingerprint_of(stored) == fingerprint.of_file(table.loc[1, "path"])


def test_touched_audio_keeps_its_features_and_records_the_new_time(tmp_path):
    table = make_manifest(tmp_path / "audio", [0.4, 0.5])
    (first,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    path = table.loc[0, "path"]
    old = os.stat(path)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 5_000_000_000))
    (again,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    assert (again.changed, again.extracted, again.already_done) == (0, 0, 2)
    with cache.open(again.path) as reader:
        stored = layout.fingerprint_of(
            reader.fingerprints[reader.ids.index(table.loc[0, "utt_id"])]
        )
    assert stored.mtime_ns == old.st_mtime_ns + 5_000_000_000
    assert stored.blake2b == fingerprint.content_digest(path)


def test_vanished_audio_keeps_its_row_unchecked_with_a_warning(tmp_path, caplog):
    table = make_manifest(tmp_path / "audio", [0.4, 0.5, 0.6])
    (first,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    before = features(first.path, table["utt_id"])
    os.remove(table.loc[2, "path"])
    with caplog.at_level(logging.WARNING, logger="ssl_ser.extract.runner"):
        (again,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    assert (again.changed, again.extracted, again.failed) == (0, 0, [])
    assert (
        "the audio of 1 cached utterance(s) is gone or unreadable (e.g. toy/utt002)" in caplog.text
    )
    np.testing.assert_array_equal(features(again.path, table["utt_id"]), before)


def test_the_fingerprint_is_of_the_ready_telephone_copy_read(tmp_path):
    table = make_manifest(tmp_path / "audio", [0.5, 0.6])
    for i in range(2):
        copy = write_wav(tmp_path / "tel" / f"{i}.wav", 0.5 + 0.1 * i, 8000, 300.0 + i, seed=i)
        table.loc[i, "telephone_path"] = str(copy)
    options = {"condition": "telephone", "telephone_source": "folder", "workers": 0}
    (first,) = extract(table, MFCC, tmp_path / "cache", **options)
    with cache.open(first.path) as reader:
        stored = layout.fingerprint_of(reader.fingerprints[0])
    assert stored == fingerprint.of_file(
        table.loc[table["utt_id"] == reader.ids[0], "telephone_path"].item()
    )
    # the clean file is not what this cache was extracted from: changing it changes nothing
    replace_audio(table, 0, 0.9)
    (same,) = extract(table, MFCC, tmp_path / "cache", **options)
    assert (same.changed, same.extracted) == (0, 0)
    copy = table.loc[1, "telephone_path"]
    write_wav(copy, 0.3, 8000, 700.0, seed=5)
    os.utime(copy, ns=(0, os.stat(copy).st_mtime_ns + 1_000_000))
    (again,) = extract(table, MFCC, tmp_path / "cache", **options)
    assert (again.changed, again.extracted) == (1, 1)


def test_an_older_cache_without_fingerprints_is_fingerprinted_once(tmp_path, caplog):
    table = make_manifest(tmp_path / "audio", [0.4, 0.5, 0.6])
    (first,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    before = features(first.path, table["utt_id"])
    with h5py.File(first.path, "r+") as file:  # as ssl-ser built caches before fingerprints
        del file[layout.FINGERPRINT]
    with cache.open(first.path) as reader:
        assert reader.fingerprints is None
    with caplog.at_level(logging.WARNING, logger="ssl_ser.extract.runner"):
        (again,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    assert (again.fingerprinted, again.changed, again.extracted) == (3, 0, 0)
    assert (
        "3 cached utterance(s) were extracted before ssl-ser recorded audio fingerprints"
        in caplog.text
    )
    np.testing.assert_array_equal(features(again.path, table["utt_id"]), before)
    with cache.open(again.path) as reader:
        for utt_id, record in zip(reader.ids, reader.fingerprints, strict=True):
            path = table.loc[table["utt_id"] == utt_id, "path"].item()
            assert layout.fingerprint_of(record) == fingerprint.of_file(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ssl_ser.extract.runner"):
        (third,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    assert third.fingerprinted == 0 and "fingerprints" not in caplog.text
    replace_audio(table, 0, 0.8)  # from now on, changes are seen
    (fourth,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    assert fourth.changed == 1
