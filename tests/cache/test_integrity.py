"""Never serve wrong features: full disks, damaged chunks, NaN bytes, read-only folders, pruning.

A full disk is simulated with ``RLIMIT_FSIZE`` in a subprocess (writes beyond the
limit fail with EFBIG, as a full disk fails them with ENOSPC) and with failing
writes patched into one process; both run as ordinary tests, without mounts.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import cache, manifest
from ssl_ser.cache import layout, lock
from ssl_ser.cache.writer import CacheWriter
from ssl_ser.classify.features import InMemoryFeatures
from ssl_ser.cli.main import cli
from ssl_ser.errors import CacheError
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.extract.runner import extract
from ssl_ser.testing import write_wav, written_duration
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest, write_cache

from .helpers import DIM, KEY, LAYERS, POOLINGS, batch, stored, utt_ids

FULL_DISK = Path(__file__).with_name("full_disk_writer.py")


def fill(path: Path, n_rows: int, n_written: int | None = None) -> list[str]:
    ids = utt_ids(n_rows)
    written = ids if n_written is None else ids[:n_written]
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        writer.add_ids(ids)
        writer.set_manifest_digest("e" * 64)
        writer.write(written, batch(written))
    return ids


def assert_rows_equal(path: Path, ids: list[str]) -> None:
    with cache.open(path, key=KEY) as reader:
        assert sorted(reader.ids) == sorted(ids)
        for pooling in POOLINGS:
            np.testing.assert_array_equal(reader.read_rows(ids, pooling), stored(ids, pooling))


def run_full_disk(
    path: Path, limit: int, n_first: int, n_total: int
) -> subprocess.CompletedProcess:
    command = [sys.executable, str(FULL_DISK), str(path), str(limit), str(n_first), str(n_total)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def chunk_offsets(path: Path, pooling: str) -> dict[tuple[int, int], tuple[int, int]]:
    """(layer, first slot) -> (byte offset, stored size) of every chunk of a pooling."""
    table = {}
    with h5py.File(path, "r") as file:
        file["features"][pooling].id.chunk_iter(
            lambda chunk: table.__setitem__(chunk.chunk_offset[:2], (chunk.byte_offset, chunk.size))
        )
    return table


# ------------------------------------------------------------------- full disk


def test_full_disk_while_growing_a_cache_is_one_error_and_keeps_its_rows(tmp_path):
    path = tmp_path / "clean.h5"
    result = run_full_disk(path, limit=64 * 1024, n_first=40, n_total=2000)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: cannot build (as clean.h5.partial) a new copy of {path}: ")
    assert "no space left on device" in error
    assert not path.with_name("clean.h5.partial").exists()
    assert not path.with_name("clean.h5.lock").exists()
    assert_rows_equal(path, utt_ids(40))  # the old file, untouched
    assert cache.verify(path) == []
    done = run_full_disk(path, limit=2**40, n_first=0, n_total=2000)  # space again: resume
    assert done.returncode == 0, done.stderr
    assert_rows_equal(path, utt_ids(2000))


def test_full_disk_while_creating_a_cache_leaves_no_partial_file(tmp_path):
    path = tmp_path / "clean.h5"
    result = run_full_disk(path, limit=2048, n_first=0, n_total=10)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: cannot build (as clean.h5.partial) a new copy of {path}")
    assert "no space left on device" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_built_file_takes_its_disk_space_up_front(tmp_path):
    """A sparse file meets a full disk only when rows land in it, mid-commit: not any more."""
    path = tmp_path / "c.h5"
    fill(path, 3000, n_written=0)
    assert os.stat(path).st_size > 3000 * 256  # 4 layers x 16 x float16 x 2 poolings
    assert cache.disk_size(path) >= os.stat(path).st_size


def sparse_dcpl(chunks, fill=None, checksum=False):
    """Dataset creation as ssl-ser 0.1 did it: no checksum, chunks left unwritten (sparse)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    structured = fill is not None and np.asarray(fill).dtype.names is not None
    if fill is None or (not structured and np.isnan(np.asarray(fill, dtype=float)).any()):
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    else:
        dcpl.set_fill_value(np.asarray(fill))
    return dcpl


def test_writer_reserves_the_blocks_of_a_sparse_old_file_before_writing(tmp_path, monkeypatch):
    path = tmp_path / "c.h5"
    with monkeypatch.context() as patch:
        patch.setattr(layout, "early_dcpl", sparse_dcpl)
        patch.setattr(CacheWriter, "_reserve", lambda self: None, raising=False)  # as 0.1 wrote it
        fill(path, 3000, n_written=10)
    assert cache.disk_size(path) < os.stat(path).st_size / 2  # sparse, as 0.1 left it
    with CacheWriter(path, KEY, LAYERS, DIM):
        assert cache.disk_size(path) >= os.stat(path).st_size
    assert_rows_equal(path, utt_ids(10))


def fail_on(monkeypatch, owner, name, after: int = 0) -> None:
    """Make owner.name raise ENOSPC from its (after+1)-th call on."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


@pytest.mark.parametrize(
    ("what", "after"),
    [("features", 0), ("data sync", 0), ("mask sync", 1)],
)
def test_a_failed_write_or_sync_marks_no_row_complete(tmp_path, monkeypatch, what, after):
    path = tmp_path / "c.h5"
    ids = fill(path, 20, n_written=5)
    writer = CacheWriter(path, KEY, LAYERS, DIM)
    if what == "features":
        fail_on(monkeypatch, writer, "_write_features")
    else:
        fail_on(monkeypatch, os, "fsync", after=after)
    writer.write(ids[5:12], batch(ids[5:12]))
    with pytest.raises(CacheError, match=rf"^cannot .* {path}: no space left on device"):
        writer.flush()
    with pytest.raises(CacheError, match="stopped after an error"):
        writer.write(ids[12:], batch(ids[12:]))
    writer.close()
    monkeypatch.undo()
    assert not path.with_name("c.h5.lock").exists()
    with cache.open(path) as reader:  # the failed commit's rows: whole, or not complete
        landed = reader.ids
        assert set(ids[:5]) <= set(landed) <= set(ids[:12])
        if what != "mask sync":
            assert landed == ids[:5]
    assert_rows_equal(path, landed)
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:  # the next run redoes the rest
        todo = writer.missing(ids)
        writer.write(todo, batch(todo))
    assert_rows_equal(path, ids)


# ----------------------------------------------------------- damaged features


def test_reading_no_rows_gives_empty_arrays(tmp_path):
    path = tmp_path / "c.h5"
    fill(path, 5, n_written=0)
    with cache.open(path) as reader:
        assert reader.read(0, "std").shape == (0, DIM)
        assert reader.read_rows([], "mean").shape == (0, len(LAYERS), DIM)


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([value ^ 0x10]))


def test_flipped_bits_fail_the_checksum_and_repair_sends_the_rows_back(tmp_path):
    path = tmp_path / "c.h5"
    ids = fill(path, 600)  # 3 chunks of 256 slots per layer
    offset, _ = chunk_offsets(path, "std")[(2, 256)]
    flip_byte(path, offset + 100)  # layer 2, slots 256-511: rows 256-511 (written in order)
    damaged = ids[256:512]
    problems = cache.verify(path)
    assert len(problems) == len(damaged)
    assert (
        problems[0]
        == f"std features of {damaged[0]!r} are in a chunk that fails its checksum (layer 2)"
    )
    with cache.open(path) as reader:
        with pytest.raises(
            CacheError, match=rf"{path}: std features cannot be read .*verify --repair"
        ):
            reader.read("2", "std")
        np.testing.assert_array_equal(reader.read("1", "std"), stored(ids, "std")[:, 1])
    result = CliRunner().invoke(cli, ["cache", "verify", "--repair", str(path)])
    assert result.exit_code == 0, result.output
    assert f"repaired: {len(damaged)} corrupt row(s) marked not complete" in result.output
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        assert writer.missing(ids) == damaged
        writer.write(damaged, batch(damaged))
    assert_rows_equal(path, ids)
    assert cache.verify(path) == []


def write_nan(path: Path, row: int, pooling: str = "std", layer: int = 1) -> None:
    """NaN into a complete row, written through HDF5 (so the checksum agrees)."""
    with h5py.File(path, "r+") as file:
        file["features"][pooling][layer, file["slot"][row], 3] = np.nan


def test_nan_rows_are_refused_by_the_reader_and_redone_by_repair(tmp_path):
    path = tmp_path / "c.h5"
    ids = fill(path, 30)
    write_nan(path, 7)
    write_nan(path, 21)
    assert cache.verify(path) == [
        f"std features of {ids[7]!r} hold NaN/inf",
        f"std features of {ids[21]!r} hold NaN/inf",
    ]
    with cache.open(path) as reader:
        with pytest.raises(CacheError) as caught:
            reader.read("1", "std")
        np.testing.assert_array_equal(reader.read("1", "mean"), stored(ids, "mean")[:, 1])
    message = str(caught.value)
    assert str(path) in message and ids[7] in message and ids[21] in message
    assert "2 row(s) hold NaN/inf" in message and "ser cache verify --repair" in message
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        assert writer.repair() == [ids[7], ids[21]]
        assert writer.missing(ids) == [ids[7], ids[21]]


def classify_args(cache_path: Path, csv: Path, output: Path, pooling: str) -> list[str]:
    return [
        "classify",
        "--cache",
        str(cache_path),
        "--manifest",
        str(csv),
        "--layers",
        "1",
        "--pooling",
        pooling,
        "--classifiers",
        "logreg",
        "--split",
        "speaker-kfold",
        "--folds",
        "2",
        "--bootstrap",
        "0",
        "--threads",
        "1",
        "--output",
        str(output),
        "--no-progress",
    ]


def test_classify_refuses_nan_features_naming_the_cache_rows_and_fix(tmp_path):
    table = synthetic_manifest(48, 4, corpus="alpha", seed=0)
    key = {"model": "tiny-model", "condition": "clean", "config_digest": "abc123"}
    features: InMemoryFeatures = synthetic_features(table, 2, 6, seed=0, key=key)
    path = tmp_path / "alpha.h5"
    write_cache(path, features, storage_dtype="float16")  # CacheWriter's default
    csv = manifest.write(table, tmp_path / "alpha.csv")
    row = 5
    write_nan(path, row, "std", layer=1)
    result = CliRunner().invoke(cli, classify_args(path, csv, tmp_path / "out", "std"))
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {path}: std features of 1 row(s) hold NaN/inf")
    assert features.ids[row] in line and "ser cache verify --repair" in line


def toy_manifest(folder: Path, count: int) -> pd.DataFrame:
    rows = []
    for i in range(count):
        wav = write_wav(folder / f"u{i:02d}.wav", seconds=0.3 + 0.05 * i, frequency=150.0 + 20 * i)
        rows.append(
            {
                "utt_id": f"toy/u{i:02d}",
                "corpus": "toy",
                "path": str(wav),
                "speaker": f"toy/s{i % 2}",
                "gender": "",
                "language": "deu",
                "emotion": "neutral",
                "emotion_raw": "N",
                "duration": written_duration(0.3 + 0.05 * i, 16000),
                "sample_rate": 16000,
                "text": "",
                "split": "",
            }
        )
    return manifest.validate(pd.DataFrame(rows))


def test_extract_redoes_damaged_rows_with_the_numbers_of_a_fresh_run(tmp_path, caplog):
    table = toy_manifest(tmp_path / "wav", 8)
    config = ExtractorConfig.for_model("mfcc")
    (first,) = extract(table, config, tmp_path / "cache", workers=0)
    path = first.path
    with cache.open(path) as reader:
        want = {p: reader.read_rows(reader.all_ids, p) for p in reader.poolings}
    with h5py.File(path, "r+") as file:
        file["features"]["std"][0, file["slot"][3], :] = np.nan
    offset, _ = chunk_offsets(path, "mean")[(0, 0)]
    flip_byte(path, offset + 8)  # every row of this small cache sits in that chunk
    grown = toy_manifest(tmp_path / "wav", 10)  # and the manifest grew: the file is rebuilt
    with caplog.at_level(logging.INFO, logger="ssl_ser.progress"):
        (again,) = extract(grown, config, tmp_path / "cache", workers=0)
    assert f"toy/clean: 8 cached row(s) of {path} were damaged" in caplog.text
    assert again.already_done == 0  # all 8 rows were in the damaged chunk: redone
    with cache.open(path) as reader:
        assert reader.all_ids == grown["utt_id"].tolist() and len(reader.ids) == 10
        for pooling, values in want.items():
            np.testing.assert_array_equal(reader.read_rows(table["utt_id"], pooling), values)
    assert cache.verify(path) == []
    (third,) = extract(grown, config, tmp_path / "cache", workers=0)
    assert third.already_done == 10


# ------------------------------------------------------------- old caches


def test_old_cache_without_checksums_opens_and_repair_adds_them(tmp_path, monkeypatch):
    path = tmp_path / "c.h5"
    with monkeypatch.context() as patch:
        patch.setattr(layout, "early_dcpl", sparse_dcpl)
        patch.setattr(CacheWriter, "_reserve", lambda self: None, raising=False)
        ids = fill(path, 40, n_written=30)
    assert cache.info(path)["checksums"] is False
    assert_rows_equal(path, ids[:30])
    result = CliRunner().invoke(cli, ["cache", "verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "note: checksums absent" in result.output
    result = CliRunner().invoke(cli, ["cache", "verify", "--repair", str(path)])
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output and cache.info(path)["checksums"] is True
    assert_rows_equal(path, ids[:30])
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:  # it resumes where it was
        assert writer.missing(ids) == ids[30:]


# -------------------------------------------------------- read-only folders


def refuse_lock_files(monkeypatch) -> None:
    """No lock file can be created: a folder the user cannot write (root can write any)."""
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(lock.os, "open", refuse)


def test_creating_a_cache_in_a_read_only_folder_is_one_error(tmp_path, monkeypatch):
    refuse_lock_files(monkeypatch)
    path = tmp_path / "clean.h5"
    with pytest.raises(
        CacheError, match=rf"^cannot create cache {path}: its folder is not writable"
    ):
        CacheWriter(path, KEY, LAYERS, DIM)
    assert list(tmp_path.iterdir()) == []


def test_extract_with_nothing_to_do_works_in_a_read_only_folder(tmp_path, monkeypatch):
    table = toy_manifest(tmp_path / "wav", 4)
    config = ExtractorConfig.for_model("mfcc")
    (done,) = extract(table, config, tmp_path / "cache", workers=0)
    folder = done.path.parent
    refuse_lock_files(monkeypatch)
    folder.chmod(0o555)  # for real where the tests do not run as root
    try:
        (again,) = extract(table, config, tmp_path / "cache", workers=0)
        assert again.already_done == 4 and not again.failed
        with cache.open(done.path) as reader:  # reading needs no lock either
            assert len(reader.read(0, "mean")) == 4
        bigger = toy_manifest(tmp_path / "wav", 5)
        with pytest.raises(CacheError, match=rf"cannot add 1 utterance\(s\) to cache {done.path}"):
            extract(bigger, config, tmp_path / "cache", workers=0)
    finally:
        folder.chmod(0o755)
    assert sorted(p.name for p in folder.iterdir()) == [done.path.name]


# ----------------------------------------------------------------- pruning


def test_prune_drops_rows_no_manifest_lists(tmp_path):
    path = tmp_path / "c.h5"
    table = synthetic_manifest(300, 5, corpus="alpha", seed=0)
    ids = table["utt_id"].tolist()
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        writer.add_ids(ids)
        writer.set_manifest_digest("e" * 64)
        writer.write(ids[:280], batch(ids[:280]))
        writer.fail(ids[290], "unreadable")
    keep_mask = np.arange(300) % 3 != 0
    keep, gone = table["utt_id"][keep_mask].tolist(), table["utt_id"][~keep_mask].tolist()
    csv = manifest.write(table[keep_mask], tmp_path / "m.csv")
    prune = ["cache", "prune", str(path), "--manifest", str(csv)]
    dry = CliRunner().invoke(cli, [*prune, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines()[0] == f"would remove: {gone[0]}"
    assert dry.output.strip().endswith(f"would remove {len(gone)} of 300 row(s), 200 kept")
    with cache.open(path) as reader:
        assert len(reader.all_ids) == 300
    result = CliRunner().invoke(cli, prune)
    assert result.exit_code == 0, result.output
    assert f"removed: {gone[-1]}" in result.output
    assert result.output.strip().endswith(f"removed {len(gone)} of 300 row(s), 200 kept")
    complete = [u for u in keep if ids.index(u) < 280]
    with cache.open(path) as reader:
        assert reader.all_ids == keep
        assert reader.failures["utt_id"].tolist() == [ids[290]]  # 290 % 3 != 0: kept
        assert reader.ids == complete
    assert_rows_equal(path, complete)
    assert cache.verify(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "m.csv"]


@pytest.mark.parametrize("point", ["copy", "replace"])
@pytest.mark.parametrize("action", ["prune", "repair"])
def test_prune_and_repair_killed_mid_rebuild_leave_the_old_file(tmp_path, point, action):
    path = tmp_path / "c.h5"
    ids = fill(path, 40, n_written=30)
    write_nan(path, 4)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import crash_writer; "
        "from ssl_ser.cache.writer import open_existing; "
        f"crash_writer.install_kill({point!r}, 1); w = open_existing(sys.argv[2]); "
        + ("w.prune(sys.argv[3:])" if action == "prune" else "w.repair()")
    )
    command = [sys.executable, "-c", script, str(FULL_DISK.parent), str(path), *ids[:20]]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    good = [u for u in ids[:30] if u != ids[4]]
    with cache.open(path) as reader:  # the old file, whole
        assert reader.all_ids == ids and reader.ids == ids[:30]
        for pooling in POOLINGS:
            np.testing.assert_array_equal(reader.read_rows(good, pooling), stored(good, pooling))
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:  # the next writer cleans up
        done = writer.prune(ids[:20]) if action == "prune" else writer.repair()
        assert done == (ids[20:] if action == "prune" else [ids[4]])
    assert not path.with_name("c.h5.partial").exists()
    kept = ids[:20] if action == "prune" else good  # prune keeps the NaN row: repair's job
    with cache.open(path) as reader:
        assert reader.ids == kept
        rest = [u for u in kept if u != ids[4]]
        for pooling in POOLINGS:
            np.testing.assert_array_equal(reader.read_rows(rest, pooling), stored(rest, pooling))


def test_changed_audio_under_a_read_only_cache_is_refused_not_served(tmp_path, monkeypatch):
    table = toy_manifest(tmp_path / "wav", 4)
    config = ExtractorConfig.for_model("mfcc")
    (done,) = extract(table, config, tmp_path / "cache", workers=0)
    write_wav(Path(table.loc[1, "path"]), seconds=0.5, frequency=900.0)  # other audio
    refuse_lock_files(monkeypatch)
    with pytest.raises(CacheError, match=r"cannot re-extract 1 changed utterance\(s\) of"):
        extract(table, config, tmp_path / "cache", workers=0)
    with cache.open(done.path) as reader:
        stored = (reader.key, reader.layers, reader.dim, reader.poolings)
        dtype = reader.header.storage_dtype
    with CacheWriter(done.path, *stored, storage_dtype=dtype) as w:
        assert w.read_only
        assert w.invalidate([]) == 0 and w.record_fingerprints({}) is None  # nothing asked
        with pytest.raises(CacheError, match="cannot re-extract 1 changed"):
            w.invalidate(["toy/u00"])
        some = w.fingerprints(["toy/u00"])
        with pytest.raises(CacheError, match="record 1 audio fingerprint"):
            w.record_fingerprints(some)


def test_a_torn_read_beside_a_writer_is_read_again_and_lasting_damage_is_not(tmp_path, monkeypatch):
    from ssl_ser.cache import reader as reader_module

    path = tmp_path / "c.h5"
    ids = utt_ids(6)
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        writer.add_ids(ids)
        writer.write(ids, batch(ids))
    monkeypatch.setattr(reader_module, "TORN_READ_WAIT_S", 0.0)
    real = reader_module.CacheReader._gather_spans
    failures = {"left": 2}

    def torn_twice(self, *args):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("Can't synchronously read data (filter returned failure during read)")
        return real(self, *args)

    monkeypatch.setattr(reader_module.CacheReader, "_gather_spans", torn_twice)
    with cache.open(path) as reader:
        assert reader.read(0, "mean").shape == (6, DIM)  # the third read is whole
        failures["left"] = reader_module.TORN_READ_ATTEMPTS  # every read fails: damage
        with pytest.raises(CacheError, match="a chunk is damaged. Run `ser cache verify --repair"):
            reader.read(0, "mean")


def test_a_damaged_chunk_without_rows_is_found_and_rebuilt_before_rows_land_there(tmp_path):
    path = tmp_path / "c.h5"
    ids = fill(path, 600, n_written=300)  # slots 0-299 written; 300-599 wait for rows
    offset, _ = chunk_offsets(path, "mean")[(1, 512)]
    flip_byte(path, offset + 40)  # a chunk no complete row uses
    problems = cache.verify(path)
    assert problems == [
        "1 chunk(s) holding no complete row fail their checksum (new rows could not be "
        "written there); --repair rebuilds the file, keeping every row"
    ]
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        assert writer.repair() == []  # no row lost: the file was rebuilt
        rest = ids[300:]
        writer.write(rest, batch(rest))  # before the rebuild this write failed, every time
    assert_rows_equal(path, ids)
    assert cache.verify(path) == []


@pytest.mark.parametrize(
    ("limit", "n_first"),
    [(2048, 0), (12_000, 0), (20_000, 0), (60_000, 0), (5_000, 40), (30_000, 40), (200_000, 40)],
)
def test_full_disk_is_one_line_naming_the_space_needed_at_every_fill_level(
    tmp_path, limit, n_first
):
    """Issue 19: one fill level crashed (SIGSEGV) and another said nothing about space."""
    path = tmp_path / "clean.h5"
    result = run_full_disk(path, limit=limit, n_first=n_first, n_total=600)
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no "Exception ignored" pages, no traceback
    needed = layout.needed_bytes(
        layout.Header(KEY, LAYERS, DIM, POOLINGS, "float16"), utt_ids(600 if n_first else 0)
    )
    assert lines[0].startswith(
        f"error: cannot build (as clean.h5.partial) a new copy of {path}: no space left on "
        f"device (needs about {needed / 2**20:.2f} MiB, files limited to {limit / 2**20:.2f} MiB "
        "by ulimit -f, "
    )
    assert not path.with_name("clean.h5.partial").exists()
    if n_first:
        assert_rows_equal(path, utt_ids(n_first))
    else:
        assert not path.exists()


def test_needed_bytes_bounds_the_built_file(tmp_path):
    for n_rows, layers, dim, chunk_rows in [(0, 4, 16, 256), (600, 4, 16, 256), (3000, 2, 6, 8)]:
        header = layout.Header(
            KEY, [str(i) for i in range(layers)], dim, POOLINGS, "float16", chunk_rows
        )
        ids = utt_ids(n_rows)
        path = tmp_path / f"{n_rows}.h5"
        layout.build(path, header, ids)
        size = os.stat(path).st_size
        assert size <= layout.needed_bytes(header, ids) <= size + 256 * 1024


def test_the_verify_bar_counts_blocks_and_is_not_drawn_without_complete_rows(tmp_path, capsys):
    empty, full = tmp_path / "empty.h5", tmp_path / "full.h5"
    fill(empty, 5, n_written=0)
    fill(full, 600)  # 3 chunks of 256 slots, for each of 2 poolings
    assert cache.verify(empty, progress=True) == []
    assert "verify" not in capsys.readouterr().err
    assert cache.verify(full, progress=True) == []
    bar = capsys.readouterr().err.split("\r")[-1]
    assert bar.startswith("verify: 100%") and "6/6" in bar
