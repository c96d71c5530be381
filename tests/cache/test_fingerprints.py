"""Per-row audio fingerprints in the cache: stored with the rows, kept, invalidated, added."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ssl_ser import cache
from ssl_ser.cache import layout
from ssl_ser.errors import CacheError
from ssl_ser.fingerprint import DIGEST_CHARS, Fingerprint

from .helpers import DIM, KEY, LAYERS, assert_changed_only_inside, batch, utt_ids


def writer(path, **options):
    return cache.CacheWriter(path, KEY, LAYERS, DIM, **options)


def made_up(i: int) -> Fingerprint:
    return Fingerprint(1000 + i, 10**18 + i, f"{i:0{DIGEST_CHARS}x}")


def test_fingerprints_are_committed_with_rows_and_failures(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(6)
    with writer(path) as w:
        w.add_ids(ids)
        w.write(ids[:3], batch(ids[:3]), [made_up(0), None, made_up(2)])
        w.fail(ids[3], "too short", made_up(3))
        w.fail(ids[4], "unreadable")
    with writer(path) as w:
        assert w.fingerprints(ids) == {ids[0]: made_up(0), ids[1]: None, ids[2]: made_up(2)}
        with_failed = w.fingerprints(ids, failed=True)
        assert with_failed[ids[3]] == made_up(3) and with_failed[ids[4]] is None
        assert ids[5] not in with_failed
    with cache.open(path) as reader:
        got = [layout.fingerprint_of(r) for r in reader.fingerprints]
        expected = {ids[0]: made_up(0), ids[1]: None, ids[2]: made_up(2)}
        assert dict(zip(reader.ids, got, strict=True)) == expected


def test_invalidated_rows_are_missing_again_and_rewritten(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(5)
    with writer(path) as w:
        w.add_ids(ids)
        w.write(ids, batch(ids), [made_up(i) for i in range(5)])
        w.flush()
        assert w.invalidate([ids[1], ids[3], "not-a-row"]) == 2
        assert w.missing(ids) == [ids[1], ids[3]]
        with pytest.raises(CacheError, match="not a committed row"):
            w.record_fingerprints({ids[1]: made_up(9)})
    with cache.open(path) as reader:
        assert reader.ids == [ids[0], ids[2], ids[4]]
    with writer(path) as w:
        assert w.missing(ids) == [ids[1], ids[3]]
        w.write([ids[1], ids[3]], batch([ids[1], ids[3]]), [made_up(11), made_up(13)])
        w.record_fingerprints({ids[0]: made_up(10)})
    with writer(path) as w:
        stored = w.fingerprints(ids)
    assert [stored[u] for u in ids] == [made_up(i) for i in (10, 11, 2, 13, 4)]


def test_live_fingerprint_writes_change_only_preallocated_raw_bytes(tmp_path):
    """The crash-safety premise holds for fingerprints, invalidation and new times."""
    path = tmp_path / "c.h5"
    ids = utt_ids(40)
    with writer(path, chunk_rows=8) as w:
        w.add_ids(ids)
    before = path.read_bytes()
    with h5py.File(path, "r") as file:
        names = ("slot", "failure_reason", layout.FINGERPRINT, "features/mean", "features/std")
        regions = [
            (info.byte_offset, info.byte_offset + info.size)
            for dataset in (file[name] for name in names)
            for info in (dataset.id.get_chunk_info(i) for i in range(dataset.id.get_num_chunks()))
        ]
    with writer(path) as w:
        w.write(ids[5:30], batch(ids[5:30]), [made_up(i) for i in range(25)])
        w.fail(ids[2], "bad", made_up(99))
        w.flush()
        w.invalidate(ids[10:12])
        w.record_fingerprints({ids[5]: made_up(50)})
    after = path.read_bytes()
    assert_changed_only_inside(before, after, regions)


def test_a_cache_built_before_fingerprints_gets_them_and_keeps_every_row(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(12)
    with writer(path) as w:
        w.add_ids(ids)
        w.write(ids[:9], batch(ids[:9]))
        w.fail(ids[9], "bad")
    with h5py.File(path, "r+") as file:
        del file[layout.FINGERPRINT]
    with cache.open(path) as reader:
        assert reader.fingerprints is None
        old = reader.read_rows(ids[:9])
    with writer(path) as w:
        assert w.fingerprints(ids, failed=True) == {u: None for u in ids[:10]}
        assert w.missing(ids) == ids[10:]
        w.add_ids([*ids, "corpus/new"])  # growing keeps the (empty) fingerprints too
        w.record_fingerprints({ids[0]: made_up(0)})
    with cache.open(path) as reader:
        assert reader.fingerprints is not None and len(reader.fingerprints) == 9
        assert layout.fingerprint_of(reader.fingerprints[reader.ids.index(ids[0])]) == made_up(0)
        np.testing.assert_array_equal(reader.read_rows(ids[:9]), old)
        assert reader.failures["utt_id"].tolist() == [ids[9]]


def test_prune_and_repair_keep_each_rows_fingerprint(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(8)
    with writer(path) as w:
        w.add_ids(ids)
        w.write(ids[:6], batch(ids[:6]), [made_up(i) for i in range(6)])
        w.fail(ids[6], "too short", made_up(6))
        w.flush()
        dropped = w.prune([ids[i] for i in (1, 3, 5, 6, 7)])
        assert dropped == [ids[0], ids[2], ids[4]]
        kept = {ids[i]: made_up(i) for i in (1, 3, 5)}
        assert w.fingerprints(ids) == kept
        assert w.fingerprints(ids, failed=True)[ids[6]] == made_up(6)
        assert w.repair() == []  # a rebuild with nothing damaged keeps them too
        assert w.fingerprints(ids) == kept
    with cache.open(path) as reader:
        prints = [layout.fingerprint_of(r) for r in reader.fingerprints]
        got = dict(zip(reader.ids, prints, strict=True))
        assert got == kept


HERE = Path(__file__).parent
REDO = """
import sys
from helpers import DIM, KEY, LAYERS, batch, utt_ids
from ssl_ser import cache
from ssl_ser.fingerprint import DIGEST_CHARS, Fingerprint

def made_up(i):
    return Fingerprint(1000 + i, 10**18 + i, f"{i:0{DIGEST_CHARS}x}")

ids = utt_ids(6)
with cache.CacheWriter(sys.argv[1], KEY, LAYERS, DIM) as w:
    assert w.invalidate([ids[1], ids[3]]) == 2
    redone = [ids[3], ids[1]]
    w.write(redone, {p: -a for p, a in batch(redone).items()}, [made_up(13), made_up(11)])
"""


def test_a_reader_keeps_its_snapshot_while_changed_rows_are_redone(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(6)
    with writer(path) as w:
        w.add_ids(ids)
        w.write(ids, batch(ids), [made_up(i) for i in range(6)])
    with cache.open(path) as reader:
        old_a = reader.read_rows([ids[1]])
        # another process: the audio of rows 1 and 3 changed, redo them with other values
        subprocess.run([sys.executable, "-c", REDO, str(path)], check=True, cwd=HERE)
        # the reader still sees the file it opened: row 1's old features and fingerprint
        np.testing.assert_array_equal(reader.read_rows([ids[1]]), old_a)
        assert layout.fingerprint_of(reader.fingerprints[1]) == made_up(1)
    with cache.open(path) as reader:
        np.testing.assert_array_equal(reader.read_rows([ids[1]]), -old_a)
        assert layout.fingerprint_of(reader.fingerprints[reader.ids.index(ids[1])]) == made_up(11)
