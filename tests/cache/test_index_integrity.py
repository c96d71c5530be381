"""The row index is checked before a row is served: checksums, ids digest, slots; damaged headers.

Issue 19: a flipped bit in ``/slot`` was reported by ``ser cache verify`` while
``ser classify`` scored another row's features; a damaged HDF5 object header was
an h5py traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ssl_ser import cache, manifest
from ssl_ser.cache import layout
from ssl_ser.cache.writer import CacheWriter
from ssl_ser.cli.main import cli
from ssl_ser.errors import CacheError
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest, write_cache

from .helpers import DIM, KEY, LAYERS, batch, stored, utt_ids
from .test_integrity import classify_args, fill, flip_byte, refuse_lock_files, sparse_dcpl


def index_chunk_offset(path: Path, name: str) -> int:
    """Byte offset of the first chunk of an index dataset."""
    found = []
    with h5py.File(path, "r") as file:
        file[name].id.chunk_iter(lambda chunk: found.append(chunk.byte_offset))
    return found[0]


def object_header(path: Path, name: str) -> int:
    with h5py.File(path, "r") as file:
        return h5py.h5o.get_info(file[name].id).addr


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(layout, "INDEX_READ_WAIT_S", 0.0, raising=False)


def test_a_flipped_bit_in_the_slot_table_is_refused_by_readers_and_repaired(tmp_path):
    path = tmp_path / "c.h5"
    ids = fill(path, 30)
    with h5py.File(path, "r") as file:
        assert file["slot"][3] == 3
    flip_byte(path, index_chunk_offset(path, "slot") + 12)  # row 3's slot: 3 -> 19
    expected = (
        "30 row(s) are in index chunk(s) (/slot or /audio_fingerprint) that fail their checksum"
    )
    assert cache.verify(path) == [expected]
    with pytest.raises(CacheError) as caught:
        cache.open(path)
    assert str(caught.value) == (
        f"{path}: the row index is damaged: {expected}. Nothing was read from it. Run "
        f"`ser cache verify --repair {path}` to send those rows back to extraction, then "
        "`ser extract` to redo them."
    )
    result = CliRunner().invoke(cli, ["cache", "verify", "--repair", str(path)])
    assert result.exit_code == 0, result.output
    assert "repaired: 30 corrupt row(s) marked not complete" in result.output
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        assert writer.missing(ids) == ids
        writer.write(ids, batch(ids))
    with cache.open(path) as reader:
        np.testing.assert_array_equal(reader.read_rows(ids, "std"), stored(ids, "std"))
    assert cache.verify(path) == []


def test_classify_refuses_a_cache_with_a_damaged_slot_table(tmp_path):
    table = synthetic_manifest(48, 4, corpus="alpha", seed=0)
    features = synthetic_features(table, 2, 6, seed=0, key={"model": "m", "condition": "clean"})
    path = tmp_path / "alpha.h5"
    write_cache(path, features, storage_dtype="float16")  # CacheWriter's default
    csv = manifest.write(table, tmp_path / "alpha.csv")
    flip_byte(path, index_chunk_offset(path, "slot") + 4 * 5)  # row 5 -> slot 21
    result = CliRunner().invoke(cli, classify_args(path, csv, tmp_path / "out", "mean"))
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {path}: the row index is damaged: 48 row(s) are in index")
    assert f"ser cache verify --repair {path}" in line
    assert not (tmp_path / "out" / "results.csv").exists()


def old_file(path: Path, monkeypatch: pytest.MonkeyPatch, n_rows: int = 30) -> list[str]:
    """A cache as ssl-ser <= 0.3 built it: no index checksums, no ids digest."""
    with monkeypatch.context() as patch:
        patch.setattr(layout, "early_dcpl", sparse_dcpl)
        patch.setattr(CacheWriter, "_reserve", lambda self: None, raising=False)
        ids = fill(path, n_rows)
    with h5py.File(path, "r+") as file:
        if "ids_digest" in file.attrs:
            del file.attrs["ids_digest"]
    return ids


def test_old_files_without_index_checksums_are_read_and_their_slots_still_checked(
    tmp_path, monkeypatch
):
    path = tmp_path / "c.h5"
    ids = old_file(path, monkeypatch)
    with cache.open(path) as reader:  # readable as before
        np.testing.assert_array_equal(reader.read_rows(ids, "mean"), stored(ids, "mean"))
    assert cache.info(path)["checksums"] is False
    with h5py.File(path, "r+") as file:
        file["slot"][3] = 19  # what a flipped bit does where no checksum catches it
    assert cache.verify(path) == ["2 complete row(s) share a slot with another row"]
    with pytest.raises(CacheError, match=r"row index is damaged: 2 complete row\(s\) share a slot"):
        cache.open(path)
    result = CliRunner().invoke(cli, ["cache", "verify", "--repair", str(path)])
    assert result.exit_code == 0, result.output
    assert "repaired: 2 corrupt row(s) marked not complete" in result.output
    assert cache.info(path)["checksums"] is True  # the rebuild added them
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        assert writer.missing(ids) == [ids[3], ids[19]]


def test_damaged_ids_are_refused_by_the_digest(tmp_path):
    path = tmp_path / "c.h5"
    ids = fill(path, 30)
    with h5py.File(path, "r+") as file:  # two ids exchanged: same bytes, other rows
        file["ids"][1], file["ids"][2] = ids[2], ids[1]
    message = f"{path}: /ids does not match its digest (the row ids are damaged); the row ids"
    assert cache.verify(path)[0].startswith(message)
    with pytest.raises(CacheError, match=f"^{re.escape(message)}"):
        cache.open(path)
    with pytest.raises(CacheError, match=f"^{re.escape(message)}"):
        CacheWriter(path, KEY, LAYERS, DIM)


@pytest.mark.parametrize(
    "name", ["ids", "slot", "failure_reason", "audio_fingerprint", "features/mean", "features"]
)
def test_a_damaged_object_header_is_one_line_naming_the_file(tmp_path, name):
    table = synthetic_manifest(48, 4, corpus="alpha", seed=0)
    features = synthetic_features(table, 2, 6, seed=0, key={"model": "m", "condition": "clean"})
    path = tmp_path / "alpha.h5"
    write_cache(path, features, storage_dtype="float16")  # CacheWriter's default
    csv = manifest.write(table, tmp_path / "alpha.csv")
    address = object_header(path, name)
    with open(path, "r+b") as handle:  # the header's version and flags: garbage
        handle.seek(address)
        handle.write(b"\xff" * 8)
    expected = f"error: cannot read cache {path}: its HDF5 structure is damaged ("
    result = CliRunner().invoke(cli, ["cache", "verify", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"problem: {expected[7:]}")
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, classify_args(path, csv, tmp_path / "out", "mean"))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(expected) and lines[-1].endswith(
        "Delete it and re-run `ser extract` to rebuild it."
    )
    assert "Traceback" not in result.output
    repair = CliRunner().invoke(cli, ["cache", "verify", "--repair", str(path)])
    assert repair.exit_code == 1 and "Traceback" not in repair.output
    assert repair.output.strip().splitlines()[-1].startswith(expected)
    with pytest.raises(CacheError, match=f"^{re.escape(expected[7:])}"):  # ser extract's writer
        CacheWriter(path, features.key, features.layers, features.dim, features.poolings)


def test_fresh_files_carry_index_checksums_and_ids_digest(tmp_path):
    path = tmp_path / "c.h5"
    ids = fill(path, 5000, n_written=10)
    with h5py.File(path, "r") as file:
        assert all(file[name].fletcher32 for name in layout.INDEX)
        assert file["slot"].chunks == (layout.INDEX_CHUNK_ROWS,)
        assert file.attrs[layout.IDS_DIGEST] == layout.ids_digest(ids)
    assert layout.ids_digest(ids) != layout.ids_digest([ids[1], ids[0], *ids[2:]])
    assert cache.info(path)["checksums"] is True


def test_an_index_chunk_torn_by_a_writer_is_read_again_and_lasting_damage_is_not(
    tmp_path, monkeypatch
):
    """A reader opening beside a committing writer may read a slot chunk mid-rewrite."""
    path = tmp_path / "c.h5"
    ids = fill(path, 30)
    real = h5py.Dataset.__getitem__
    failures = {"left": 2}

    def torn(self, key):
        if self.name == "/slot" and failures["left"]:
            failures["left"] -= 1
            raise OSError("Can't synchronously read data (filter returned failure during read)")
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", torn)
    with cache.open(path) as reader:  # two torn reads, then the whole chunk
        assert reader.ids == ids
    failures["left"] = layout.INDEX_READ_ATTEMPTS + 1  # every read of the chunk fails: damage
    with pytest.raises(CacheError, match=r"row index is damaged: 30 row\(s\) are in index chunk"):
        cache.open(path)


def test_a_damaged_failure_reason_chunk_is_found_and_its_failed_rows_retried(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(30)
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        writer.add_ids(ids)
        writer.set_manifest_digest("e" * 64)
        writer.write(ids[:28], batch(ids[:28]))
        writer.fail(ids[28], "unreadable")
        writer.fail(ids[29], "unreadable")
    flip_byte(path, index_chunk_offset(path, "failure_reason") + 3)
    assert cache.verify(path) == [
        "2 failed row(s) are in /failure_reason chunk(s) that fail their checksum"
    ]
    with cache.open(path) as reader:  # the features are sound and served
        np.testing.assert_array_equal(reader.read_rows(ids[:28], "mean"), stored(ids[:28], "mean"))
        with pytest.raises(CacheError, match=f"^cannot read cache {re.escape(str(path))}: "):
            _ = reader.failures
    result = CliRunner().invoke(cli, ["cache", "verify", "--repair", str(path)])
    assert result.exit_code == 0, result.output
    assert "repaired: 2 corrupt row(s) marked not complete" in result.output
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        assert writer.missing(ids) == ids[28:]


def test_a_read_only_writer_refuses_a_damaged_index_it_cannot_mend(tmp_path, monkeypatch):
    path = tmp_path / "c.h5"
    fill(path, 30)
    flip_byte(path, index_chunk_offset(path, "slot") + 12)
    refuse_lock_files(monkeypatch)
    with pytest.raises(CacheError, match=r"row index is damaged: 30 row\(s\) are in index chunk"):
        CacheWriter(path, KEY, LAYERS, DIM)
