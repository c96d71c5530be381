"""A row's fingerprint binds the path its features came from; ``--rehash`` hashes every file.

Issue 19: two rows whose paths were exchanged in the manifest (files of equal size
and modification time, e.g. after ``cp -p``) kept each other's features, since
equal size and time skipped the hash.
"""

from __future__ import annotations

import logging
import os
import shutil

import h5py
import numpy as np
from click.testing import CliRunner

from ssl_ser import cache, fingerprint, manifest
from ssl_ser.cache import layout
from ssl_ser.cli.main import cli
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.testing import write_wav

from .helpers import make_manifest

MFCC = ExtractorConfig(model="mfcc")


def features(path, ids, pooling="mean") -> np.ndarray:
    with cache.open(path) as reader:
        return reader.read_rows(ids, pooling)


def same_times(*paths) -> None:
    """Give files one modification time (as ``cp -p`` or ``touch -r`` can)."""
    stamp = os.stat(paths[0]).st_mtime_ns
    for path in paths:
        os.utime(path, ns=(stamp, stamp))


def test_rows_whose_paths_were_exchanged_are_extracted_again(tmp_path, caplog):
    table = make_manifest(tmp_path / "audio", [0.5, 0.5, 0.7, 0.8])
    paths = table["path"].tolist()
    same_times(paths[0], paths[1])
    assert os.stat(paths[0]).st_size == os.stat(paths[1]).st_size
    ids = table["utt_id"].tolist()
    (first,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    swapped = table.copy()
    swapped.loc[[0, 1], "path"] = [paths[1], paths[0]]
    with caplog.at_level(logging.INFO, logger="ssl_ser.progress"):
        (again,) = extract(swapped, MFCC, tmp_path / "cache", workers=0)
    assert (again.changed, again.extracted, again.already_done) == (2, 2, 2)
    assert "2 utterance(s) changed since they were extracted; re-extracting" in caplog.text
    (fresh,) = extract(swapped, MFCC, tmp_path / "fresh", workers=0)
    for pooling in ("mean", "std"):
        np.testing.assert_array_equal(
            features(again.path, ids, pooling), features(fresh.path, ids, pooling)
        )
    with cache.open(again.path) as reader:
        stored = layout.fingerprint_of(reader.fingerprints[reader.ids.index(ids[0])])
    assert stored.path == fingerprint.path_digest(paths[1]) and stored.same_path(paths[1])
    (third,) = extract(swapped, MFCC, tmp_path / "cache", workers=0)
    assert (third.changed, third.already_done) == (0, 4)


def test_a_moved_corpus_is_hashed_once_and_keeps_its_features(tmp_path):
    table = make_manifest(tmp_path / "audio", [0.5, 0.6])
    ids = table["utt_id"].tolist()
    (first,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    before = features(first.path, ids)
    shutil.copytree(tmp_path / "audio", tmp_path / "moved", copy_function=shutil.copy2)
    moved = table.assign(
        path=table["path"].str.replace(str(tmp_path / "audio"), str(tmp_path / "moved"))
    )
    (again,) = extract(moved, MFCC, tmp_path / "cache", workers=0)
    assert (again.changed, again.extracted, again.already_done) == (0, 0, 2)
    np.testing.assert_array_equal(features(again.path, ids), before)
    with cache.open(again.path) as reader:
        prints = [layout.fingerprint_of(record) for record in reader.fingerprints]
    assert [p.path for p in prints] == [fingerprint.path_digest(p) for p in moved["path"]]


def test_equal_size_and_time_replacement_needs_rehash(tmp_path):
    """What the stat cannot see: other audio of the same size, given the old time."""
    table = make_manifest(tmp_path / "audio", [0.5, 0.6])
    csv = manifest.write(table, tmp_path / "m.csv")
    args = ["extract", str(csv), "--model", "mfcc", "--cache-dir", str(tmp_path / "cache")]
    assert CliRunner().invoke(cli, [*args, "--workers", "0"]).exit_code == 0
    path = table.loc[1, "path"]
    old = os.stat(path)
    write_wav(path, seconds=0.6, sample_rate=16000, frequency=900.0, seed=7)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert os.stat(path).st_size == old.st_size
    plain = CliRunner().invoke(cli, [*args, "--workers", "0"])
    assert plain.exit_code == 0, plain.output
    assert "0 utterances" in plain.output and "2 already cached" in plain.output  # not caught
    rehashed = CliRunner().invoke(cli, [*args, "--workers", "0", "--rehash"])
    assert rehashed.exit_code == 0, rehashed.output
    assert "1 utterances" in rehashed.output and "1 changed since extraction" in rehashed.output


def test_fingerprints_without_paths_are_hashed_once_and_upgraded(tmp_path):
    """A cache of ssl-ser 0.3 (fingerprints without paths) is rebuilt with the path field."""
    table = make_manifest(tmp_path / "audio", [0.5, 0.6])
    ids = table["utt_id"].tolist()
    (first,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    with h5py.File(first.path, "r+") as file:  # the 0.3 layout of /audio_fingerprint
        old = file[layout.FINGERPRINT][:]
        del file[layout.FINGERPRINT]
        legacy = np.dtype([(name, old.dtype[name]) for name in ("size", "mtime_ns", "blake2b")])
        file.create_dataset(
            layout.FINGERPRINT, data=old[["size", "mtime_ns", "blake2b"]].astype(legacy)
        )
    with cache.open(first.path) as reader:
        assert [layout.fingerprint_of(r).path for r in reader.fingerprints] == ["", ""]
    before = features(first.path, ids)
    (again,) = extract(table, MFCC, tmp_path / "cache", workers=0)
    assert (again.changed, again.already_done) == (0, 2)
    np.testing.assert_array_equal(features(again.path, ids), before)
    with h5py.File(first.path, "r") as file:
        assert layout.has_path_fingerprints(file)
    with cache.open(first.path) as reader:
        assert all(layout.fingerprint_of(r).path for r in reader.fingerprints)
