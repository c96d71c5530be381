"""The cache writer and reader: round trips, keys, growth, failures, errors and the file layout."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pandas as pd
import pytest

from ssl_ser import __version__, cache
from ssl_ser.cache import layout
from ssl_ser.errors import CacheError, CacheKeyMismatchError, ConfigError, UnknownChoiceError

from .helpers import (
    DIM,
    KEY,
    LAYERS,
    POOLINGS,
    assert_changed_only_inside,
    batch,
    features,
    stored,
    utt_ids,
)


def writer(path, **options):
    return cache.CacheWriter(path, KEY, LAYERS, DIM, **options)


def fill(path, ids, order=None, batch_size=7, **options):
    """Write `ids` in `order` (default: reversed), in batches, committing each batch."""
    order = list(reversed(ids)) if order is None else order
    with writer(path, **options) as w:
        w.add_ids(ids)
        w.set_manifest_digest("d" * 64)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            w.write(chunk, batch(chunk))
            w.flush()


@pytest.mark.parametrize("storage_dtype", ["float16", "float32"])
def test_round_trip_equals_the_input_cast_to_the_storage_dtype(tmp_path, storage_dtype):
    path = cache.cache_path(tmp_path, "tiny-0123", "emodb", "clean")
    ids = utt_ids(40)
    shuffled = list(np.random.default_rng(0).permutation(ids))
    fill(path, ids, order=shuffled, storage_dtype=storage_dtype)
    with cache.open(path, key=KEY) as reader:
        assert reader.ids == ids  # file order is registration order, not write order
        assert reader.layers == LAYERS and reader.poolings == list(POOLINGS)
        assert reader.shape == (40, len(LAYERS), DIM)
        for pooling in POOLINGS:
            want = stored(ids, pooling, storage_dtype)
            for index, name in enumerate(LAYERS):
                got = reader.read(name, pooling)
                assert got.dtype == np.float32
                np.testing.assert_array_equal(got, want[:, index])
                np.testing.assert_array_equal(reader.read(index, pooling), got)
            np.testing.assert_array_equal(reader.read(-1, pooling), want[:, -1])
            subset = [ids[9], ids[2], ids[30], ids[2]]
            np.testing.assert_array_equal(
                reader.read_rows(subset, pooling), stored(subset, pooling, storage_dtype)
            )
            np.testing.assert_array_equal(
                reader.read("2", pooling, ids=subset), stored(subset, pooling, storage_dtype)[:, 2]
            )
    if storage_dtype == "float32":
        np.testing.assert_array_equal(stored(ids, "mean", "float32"), batch(ids)["mean"])


def test_file_describes_itself(tmp_path):
    path = tmp_path / "c.h5"
    fill(path, utt_ids(3))
    with h5py.File(path, "r") as file:
        assert json.loads(file.attrs["key"]) == KEY
        assert file.attrs["toolkit_version"] == __version__
        assert file["features/mean"].dtype == np.float16
        assert file["features/mean"].chunks == (1, 3, DIM)
    with cache.open(path) as reader:
        assert reader.manifest_digest == "d" * 64
        assert reader.toolkit_version == __version__
        assert reader.key == KEY


def test_each_layer_is_one_sequential_stretch_of_the_file(tmp_path):
    path = tmp_path / "c.h5"
    fill(path, utt_ids(100), chunk_rows=16)
    with h5py.File(path, "r") as file:
        dataset = file["features/std"]
        chunk_bytes = 16 * DIM * 2 + 4  # float16 rows + the chunk's Fletcher-32 checksum
        for layer in range(len(LAYERS)):
            offsets = [
                dataset.id.get_chunk_info_by_coord((layer, start, 0)).byte_offset
                for start in range(0, 100, 16)
            ]
            assert np.diff(offsets).tolist() == [chunk_bytes] * (len(offsets) - 1)


def test_cache_path_layout_and_listing(tmp_path):
    path = cache.cache_path(tmp_path, "wavlm-base-abc", "emodb", "telephone")
    assert path == tmp_path / "wavlm-base-abc" / "emodb" / "telephone.h5"
    with pytest.raises(ConfigError, match="corpus"):
        cache.cache_path(tmp_path, "slug", "../x", "clean")
    fill(path, utt_ids(2))
    fill(cache.cache_path(tmp_path, "a", "b", "clean"), utt_ids(2))
    assert cache.list_caches(tmp_path) == [tmp_path / "a/b/clean.h5", path]


def test_key_mismatch_is_refused_naming_each_field(tmp_path):
    path = tmp_path / "c.h5"
    fill(path, utt_ids(3))
    changed = {**KEY, "revision": "ffff", "whisper_trim": 0, "extra": 1.5}
    del changed["condition"]
    with pytest.raises(CacheKeyMismatchError) as caught:
        cache.CacheWriter(path, changed, LAYERS, DIM)
    message = str(caught.value)
    assert str(path) in message
    assert 'revision: stored "0123abcd", requested "ffff"' in message
    assert "whisper_trim: stored false, requested 0" in message
    assert "extra: stored (absent), requested 1.5" in message
    assert 'condition: stored "clean", requested (absent)' in message
    with pytest.raises(CacheKeyMismatchError, match="dim: stored 16, requested 8"):
        cache.CacheWriter(path, KEY, LAYERS, 8)
    with pytest.raises(CacheKeyMismatchError, match="revision"):
        cache.open(path, key={**KEY, "revision": "x"})
    with writer(path) as w:  # the refused writers released the lock
        assert w.n_complete == 3


def test_bad_keys_and_layouts_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="nested"):
        cache.CacheWriter(tmp_path / "c.h5", {"model": {"a": 1}}, LAYERS, DIM)
    with pytest.raises(UnknownChoiceError, match="float16, float32"):
        cache.CacheWriter(tmp_path / "c.h5", KEY, LAYERS, DIM, storage_dtype="bfloat16")
    with pytest.raises(ConfigError, match="unique"):
        cache.CacheWriter(tmp_path / "c.h5", KEY, ["0", "0"], DIM)
    assert not (tmp_path / "c.h5").exists()


def test_new_manifest_rows_are_added_and_none_dropped(tmp_path):
    path = tmp_path / "c.h5"
    old = utt_ids(20)
    fill(path, old)
    new_manifest = old[5:] + ["corpus/new_a", "corpus/new_b"]
    with writer(path) as w:
        assert w.add_ids(new_manifest) == 2
        assert w.add_ids(new_manifest) == 0
        assert w.missing(new_manifest) == ["corpus/new_a", "corpus/new_b"]
        assert w.ids == old + ["corpus/new_a", "corpus/new_b"]
    with cache.open(path) as reader:
        assert reader.ids == old
        assert reader.complete.tolist() == [True] * 20 + [False, False]
        np.testing.assert_array_equal(reader.read_rows(old), stored(old, "mean"))


def test_missing_failures_and_retry(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(6)
    long_reason = "é" * 400  # 800 bytes of UTF-8: cut to the reason size
    with writer(path) as w:
        w.add_ids(ids)
        assert w.missing(ids + ["x/unknown"]) == ids + ["x/unknown"]
        w.write(ids[:2], batch(ids[:2]))
        w.fail(ids[2], "cannot read audio: empty file")
        w.fail(ids[3], long_reason)
        assert w.missing(ids) == ids[4:]  # buffered rows count as done
    with cache.open(path) as reader:
        assert reader.ids == ids[:2]
        assert reader.failures["utt_id"].tolist() == ids[2:4]
        assert reader.failures["reason"][0] == "cannot read audio: empty file"
        cut = reader.failures["reason"][1]
        assert cut.endswith("...") and long_reason.startswith(cut[:-3])
        assert len(cut.encode()) <= layout.REASON_BYTES
    with writer(path) as w:
        assert w.missing(ids) == ids[4:]
        assert w.missing(ids, retry=True) == ids[2:]
        w.write([ids[2]], batch([ids[2]]))
    with cache.open(path) as reader:
        assert reader.ids == ids[:3]
        assert reader.failures["utt_id"].tolist() == [ids[3]]


def test_write_refuses_bad_input(tmp_path):
    ids = utt_ids(3)
    with writer(tmp_path / "c.h5") as w:
        w.add_ids(ids)
        with pytest.raises(CacheError, match="add_ids"):
            w.write(["x/unknown"], batch(["x/unknown"]))
        with pytest.raises(CacheError, match=r"expected \['mean', 'std'\]"):
            w.write(ids[:1], {"mean": batch(ids[:1])["mean"]})
        with pytest.raises(CacheError, match=r"shape \(1, 4, 8\).*\(1, 4, 16\)"):
            w.write(ids[:1], {p: np.zeros((1, 4, 8)) for p in POOLINGS})
        with pytest.raises(CacheError, match="repeated"):
            w.write([ids[0], ids[0]], batch([ids[0], ids[0]]))
        nan = batch(ids[:2])
        nan["std"][1, 2, 3] = np.nan
        with pytest.raises(CacheError, match=rf"std features of \['{ids[1]}'\].*NaN"):
            w.write(ids[:2], nan)
        huge = batch(ids[:1])
        huge["mean"][0, 0, 0] = 1e6
        with pytest.raises(CacheError, match="float32"):
            w.write(ids[:1], huge)
        w.write(ids[:1], batch(ids[:1]))
        with pytest.raises(CacheError, match="already given"):
            w.fail(ids[0], "late")
        w.flush()
        with pytest.raises(CacheError, match="already complete"):
            w.write(ids[:1], batch(ids[:1]))
    with cache.open(tmp_path / "c.h5") as reader:
        assert reader.ids == ids[:1]


def test_commits_every_flush_rows_and_readers_see_a_snapshot(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(10)
    with writer(path, flush_rows=4) as w:
        w.add_ids(ids)
        for utt_id in ids[:5]:
            w.write([utt_id], batch([utt_id]))
        with cache.open(path) as early:
            assert early.ids == ids[:4]
            w.write(ids[5:], batch(ids[5:]))
            w.flush()
            assert early.ids == ids[:4]  # a snapshot: later commits are not seen
            np.testing.assert_array_equal(early.read("1"), stored(ids[:4], "mean")[:, 1])
        with cache.open(path) as late:
            assert late.ids == ids


def test_one_layer_classic_features_accept_2d_arrays(tmp_path):
    path = tmp_path / "egemaps.h5"
    ids = utt_ids(4)
    values = np.random.default_rng(1).standard_normal((4, 88)).astype(np.float32)
    with cache.CacheWriter(path, {"model": "egemaps"}, ["0"], 88, ("mean",), "float32") as w:
        w.add_ids(ids)
        w.write(ids, {"mean": values})
    with cache.open(path) as reader:
        np.testing.assert_array_equal(reader.read(0), values)
        np.testing.assert_array_equal(reader.read_rows(ids[1:2]), values[1:2, None, :])


def test_reader_errors_name_the_file_and_the_choices(tmp_path):
    path = tmp_path / "c.h5"
    fill(path, utt_ids(3))
    with cache.open(path) as reader:
        with pytest.raises(UnknownChoiceError, match=r"layer '7' in .*c\.h5; expected one of 0, 1"):
            reader.read("7")
        with pytest.raises(UnknownChoiceError, match="layer 4"):
            reader.read(4)
        with pytest.raises(UnknownChoiceError, match="pooling 'max'.*mean, std"):
            reader.read(0, "max")
        with pytest.raises(CacheError, match="no complete features.*x/none"):
            reader.read_rows(["x/none"])
    with pytest.raises(CacheError, match="no cache file"):
        cache.open(tmp_path / "absent.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(CacheError, match="delete it and re-run"):
        cache.open(tmp_path / "junk.h5")
    with pytest.raises(CacheError, match="delete it and re-run"):
        writer(tmp_path / "junk.h5")
    assert not (tmp_path / "junk.h5.lock").exists()
    with h5py.File(tmp_path / "other.h5", "w"):
        pass
    with pytest.raises(CacheError, match="not an ssl-ser feature cache"):
        cache.open(tmp_path / "other.h5")


def test_join_keeps_manifest_rows_with_features_in_reader_order(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(8)
    with writer(path) as w:
        w.add_ids(ids)
        w.write(ids[:6], batch(ids[:6]))
        w.fail(ids[6], "bad")
    manifest = pd.DataFrame({"utt_id": ["other/x", *reversed(ids)], "emotion": ["angry"] * 9})
    with cache.open(path) as reader:
        joined = reader.join(manifest)
        assert joined["utt_id"].tolist() == ids[:6]
        assert joined["emotion"].tolist() == ["angry"] * 6
        x = reader.read("3", "std")[joined[cache.ROW_COLUMN]]
        np.testing.assert_array_equal(x, stored(joined["utt_id"], "std")[:, 3])
        subset = reader.join(manifest.iloc[[1, 4, 8, 6]])  # ids 7 (not written), 4, 0, 2
        assert subset["utt_id"].tolist() == [ids[0], ids[2], ids[4]]
        assert subset[cache.ROW_COLUMN].tolist() == [0, 2, 4]


def test_info_and_verify(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(30)
    fill(path, ids[:25])
    with writer(path) as w:
        w.add_ids(ids)
        w.fail(ids[25], "bad")
    summary = cache.info(path)
    assert summary["key"] == KEY
    assert summary["shape"] == [25, len(LAYERS), DIM]
    assert (summary["rows_complete"], summary["rows_total"], summary["rows_failed"]) == (25, 30, 1)
    assert summary["size_bytes"] > 0
    assert cache.verify(path) == []
    with h5py.File(path, "r+") as file:  # damage a complete row, then repeat an id
        slot = file["slot"][7]
        file["features/std"][2, slot, 5] = np.inf
    assert cache.verify(path) == [f"std features of {ids[7]!r} hold NaN/inf"]
    with h5py.File(path, "r+") as file:
        file["ids"][1] = ids[0]
        file.attrs.modify("manifest_digest", np.bytes_(b""))
    problems = cache.verify(path)
    assert any("repeat" in p for p in problems)
    assert any("digest" in p for p in problems)


def test_live_writes_change_only_preallocated_raw_bytes(tmp_path):
    """The crash-safety premise: a live writer never rewrites HDF5 metadata."""
    path = tmp_path / "c.h5"
    ids = utt_ids(50)
    with writer(path, chunk_rows=8) as w:
        w.add_ids(ids)
        w.set_manifest_digest("a" * 64)
    before = path.read_bytes()
    with h5py.File(path, "r") as file:
        raw = [file[name] for name in ("slot", "failure_reason", "features/mean", "features/std")]
        regions = [
            (info.byte_offset, info.byte_offset + info.size)
            for dataset in raw
            for info in (dataset.id.get_chunk_info(i) for i in range(dataset.id.get_num_chunks()))
        ]
    digest_at = before.index(b"a" * 64)
    regions.append((digest_at, digest_at + layout.DIGEST_BYTES))
    with writer(path) as w:
        w.write(ids[10:40], batch(ids[10:40]))
        w.fail(ids[3], "bad")
        w.flush()
        w.set_manifest_digest("b" * 64)
        w.write(ids[:3], batch(ids[:3]))
    after = path.read_bytes()
    assert_changed_only_inside(before, after, regions)
    assert after[digest_at : digest_at + 64] == b"b" * 64


def test_features_helper_is_deterministic():
    np.testing.assert_array_equal(features("a", "mean"), features("a", "mean"))
    assert not np.array_equal(features("a", "mean"), features("a", "std"))


def test_scattered_reads_hint_the_bytes_of_every_requested_row(tmp_path, monkeypatch):
    path = tmp_path / "c.h5"
    ids = utt_ids(300)
    fill(path, ids, chunk_rows=16, batch_size=50)
    advised = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, at, size, advice: advised.append((at, size))
    )
    subset = ids[::20][::-1]  # 15 rows more than MERGE_GAP slots apart
    with cache.open(path) as reader:
        np.testing.assert_array_equal(reader.read_rows(subset, "std"), stored(subset, "std"))
    assert len(advised) >= len(subset) * len(LAYERS)
    data = path.read_bytes()
    for utt_id in subset:
        for row in batch([utt_id], ("std",))["std"][0].astype(np.float16):
            at = data.find(row.tobytes())
            assert at >= 0
            assert any(start <= at and at + row.nbytes <= start + size for start, size in advised)


# --- storage dtype conversion and key versions -------------------------------------------


def test_another_storage_dtype_is_refused_saying_how_to_keep_or_convert(tmp_path):
    path = tmp_path / "c.h5"
    fill(path, utt_ids(4), storage_dtype="float16")
    with pytest.raises(CacheKeyMismatchError) as error:
        writer(path, storage_dtype="float32")
    message = str(error.value)
    assert f"cache {path} stores float16; this run asked for float32" in message
    assert "--storage-dtype float16 or auto" in message and "--storage-dtype float32" in message
    assert "convert_dtype=True" in message and "delete" not in message


@pytest.mark.parametrize(("old", "new"), [("float16", "float32"), ("float32", "float16")])
def test_conversion_keeps_every_row_cast_to_the_new_dtype(tmp_path, old, new):
    path = tmp_path / "c.h5"
    ids = utt_ids(12)
    fill(path, ids[:9], storage_dtype=old, batch_size=4)
    with writer(path, storage_dtype=new, convert_dtype=True) as w:
        assert w.header.storage_dtype == new and w.n_complete == 9
        w.add_ids(ids)
        w.write(ids[9:], batch(ids[9:]))
    with cache.open(path) as reader:
        assert reader.storage_dtype == new and reader.ids == ids[:9] + ids[9:]
        assert reader.manifest_digest == "d" * 64
        for pooling in POOLINGS:
            # rows stored before keep what their first dtype held; new rows get the new one
            expected = stored(ids[:9], pooling, old).astype(new).astype(np.float32)
            np.testing.assert_array_equal(reader.read_rows(ids[:9], pooling), expected)
            np.testing.assert_array_equal(
                reader.read_rows(ids[9:], pooling), stored(ids[9:], pooling, new)
            )
    assert cache.verify(path) == []
    assert not (tmp_path / "c.h5.partial").exists()


def test_conversion_to_float16_refuses_values_beyond_its_range_and_keeps_the_file(tmp_path):
    path = tmp_path / "c.h5"
    ids = utt_ids(3)
    big = batch(ids)
    big["std"][1, 2, 3] = -85058.0  # an eGeMAPS stddevNorm seen on EmoDB
    with writer(path, storage_dtype="float32") as w:
        w.add_ids(ids)
        w.write(ids, big)
    with pytest.raises(CacheError, match=r"cannot store the rows of .*c\.h5 as float16.*85058"):
        writer(path, storage_dtype="float16", convert_dtype=True)
    assert not (tmp_path / "c.h5.partial").exists()
    with cache.open(path) as reader:
        assert reader.storage_dtype == "float32"
        assert reader.read_rows(ids, "std")[1, 2, 3] == -85058.0


def test_values_beyond_float16_say_how_to_store_them_as_float32(tmp_path):
    ids = utt_ids(2)
    big = batch(ids)
    big["mean"][0, 0, 0] = 70000.0
    with writer(tmp_path / "c.h5") as w:
        w.add_ids(ids)
        with pytest.raises(CacheError, match="ser extract --storage-dtype float32` converts"):
            w.write(ids, big)


def test_a_key_of_ssl_ser_0_1_0_compares_as_feature_version_1():
    legacy = {**KEY, "toolkit_version": "0.1.0"}
    assert cache.key_differences(legacy, {**KEY, "feature_version": 1}) == []
    assert (
        cache.key_differences(
            {**KEY, "feature_version": 1, "toolkit_version": "0.0.1"}, {**KEY, "feature_version": 1}
        )
        == []
    )
    assert cache.key_differences(legacy, {**KEY, "feature_version": 2}) == [
        "feature_version: stored 1, requested 2"
    ]
    assert cache.key_differences(KEY, {**KEY, "feature_version": 1}) == [
        "feature_version: stored (absent), requested 1"
    ]


def test_a_file_of_another_toolkit_version_opens_with_the_same_key(tmp_path, monkeypatch):
    import ssl_ser

    path = tmp_path / "c.h5"
    key = {**KEY, "feature_version": 3}
    monkeypatch.setattr(ssl_ser, "__version__", "0.0.9")
    with cache.CacheWriter(path, key, LAYERS, DIM) as w:
        w.add_ids(utt_ids(2))
        w.write(utt_ids(2), batch(utt_ids(2)))
    monkeypatch.setattr(ssl_ser, "__version__", "1.4.2")
    with cache.CacheWriter(path, key, LAYERS, DIM) as w:
        assert w.n_complete == 2 and w.header.toolkit_version == "0.0.9"
    with pytest.raises(CacheKeyMismatchError, match="feature_version: stored 3, requested 4"):
        cache.CacheWriter(path, {**KEY, "feature_version": 4}, LAYERS, DIM)
    assert cache.info(path)["feature_version"] == 3
    assert cache.info(path)["toolkit_version"] == "0.0.9"


# --- reading in pieces --------------------------------------------------------------------


@pytest.mark.parametrize("written", ["in order", "shuffled"])
def test_reads_convert_piece_by_piece_and_equal_the_stored_values(tmp_path, monkeypatch, written):
    # A layer is read and cast to float32 a few rows at a time (the whole layer cast at
    # once cost more than reading it); every row lands where it belongs, exactly,
    # whatever order the rows were written in.
    from ssl_ser.cache import reader as reader_module

    path = tmp_path / "c.h5"
    ids = utt_ids(100)
    order = list(np.random.default_rng(1).permutation(ids)) if written == "shuffled" else ids
    fill(path, ids, order=order, chunk_rows=16, batch_size=9)
    piece_rows = 7
    monkeypatch.setattr(reader_module, "PIECE_BYTES", piece_rows * DIM * 2)
    sizes = []
    finite_rows = reader_module._finite_rows

    def spy(converted):  # called once per converted piece
        sizes.append(len(converted))
        return finite_rows(converted)

    monkeypatch.setattr(reader_module, "_finite_rows", spy)
    subset = [ids[40], ids[3], ids[77], ids[3], ids[41]]
    with cache.open(path) as reader:
        for pooling in POOLINGS:
            want = stored(ids, pooling)
            np.testing.assert_array_equal(reader.read("1", pooling), want[:, 1])
            np.testing.assert_array_equal(
                reader.read(3, pooling, ids=subset), want[:, 3][[40, 3, 77, 3, 41]]
            )
        np.testing.assert_array_equal(reader.read_rows(subset, "std"), stored(subset, "std"))
        np.testing.assert_array_equal(reader.read_rows(ids, "mean"), stored(ids, "mean"))
    assert sizes and max(sizes) <= piece_rows
    assert sum(sizes) >= 2 * len(ids)
