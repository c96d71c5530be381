"""Crash safety and locking, tested with real processes killed by SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ssl_ser import cache
from ssl_ser.errors import CacheLockedError

from .helpers import DIM, KEY, LAYERS, POOLINGS, reason_of, stored

SCRIPT = Path(__file__).with_name("crash_writer.py")


def run_writer(path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), str(path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def last_committed(stdout: str) -> int:
    counts = [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("committed")]
    return counts[-1] if counts else 0


def check_only_whole_rows(path: Path) -> int:
    """A reader of a (possibly killed) file sees only rows whose every value was written."""
    if not path.exists():
        return 0
    with cache.open(path, key=KEY) as reader:
        for pooling in POOLINGS:
            np.testing.assert_array_equal(
                reader.read_rows(reader.ids, pooling), stored(reader.ids, pooling)
            )
        for utt_id, reason in reader.failures.itertuples(index=False):
            assert reason == reason_of(utt_id)
        complete = len(reader.ids)
    problems = [p for p in cache.verify(path) if "digest" not in p]
    assert problems == []
    return complete


def assert_same_content(path: Path, reference: Path) -> None:
    with cache.open(path) as got, cache.open(reference) as want:
        assert got.all_ids == want.all_ids
        np.testing.assert_array_equal(got.complete, want.complete)
        assert got.failures.equals(want.failures)
        assert got.key == want.key and got.manifest_digest == want.manifest_digest
        for pooling in POOLINGS:
            for layer in LAYERS:
                np.testing.assert_array_equal(got.read(layer, pooling), want.read(layer, pooling))
    assert cache.verify(path) == []
    assert not path.with_name(path.name + ".partial").exists()
    assert not path.with_name(path.name + ".lock").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "clean.h5"
    result = run_writer(path)
    assert result.returncode == 0, result.stderr
    with cache.open(path) as reader:
        assert reader.shape == (55, len(LAYERS), DIM) and len(reader.failures) == 5
    return path


@pytest.mark.parametrize(
    ("point", "at", "batch_may_land"),
    [
        ("replace", 1, False),  # the very first (empty) file built, not renamed yet
        ("copy", 2, False),  # growing a file that holds rows: new file half built
        ("replace", 3, False),  # grown file complete, not renamed yet
        ("data", 3, False),  # features written and synced, mask not yet
        ("sync", 4, False),  # features partly in HDF5's chunk cache, not flushed
        ("sync", 9, True),  # mask written, maybe still in HDF5's chunk cache
        ("digest", 2, False),  # digest attribute changed, not flushed
    ],
)
def test_kill_then_rerun_equals_uninterrupted_run(tmp_path, reference, point, at, batch_may_land):
    path = tmp_path / "clean.h5"
    killed = run_writer(path, "--kill", point, "--at", str(at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    committed = last_committed(killed.stdout)
    complete = check_only_whole_rows(path)
    assert committed <= complete <= committed + (5 if batch_may_land else 0)
    rerun = run_writer(path)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_content(path, reference)


@pytest.mark.slow
def test_kills_at_random_moments(tmp_path, reference):
    path = tmp_path / "clean.h5"
    rng = np.random.default_rng(7)
    command = [sys.executable, str(SCRIPT), str(path), "--sleep", "0.1"]
    kills = committed = 0
    while kills < 4:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 0.8))
        process.kill()
        stdout, _ = process.communicate()
        if process.returncode == 0:
            break
        kills += 1
        complete = check_only_whole_rows(path)
        # a loaded machine may kill a run before its first commit: earlier runs' rows count
        committed = max(committed, last_committed(stdout))
        assert committed <= complete <= committed + 5
    assert kills >= 2  # the batches sleep 0.1 s each, so most kills land mid-run
    assert run_writer(path).returncode == 0
    assert_same_content(path, reference)


def test_second_writer_is_refused_until_the_first_dies(tmp_path):
    path = tmp_path / "clean.h5"
    holder = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(path), "--hold"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().split()[0] == "ready"
        with pytest.raises(CacheLockedError, match=rf"pid {holder.pid}\b"):
            cache.CacheWriter(path, KEY, LAYERS, DIM)
        with cache.open(path) as reader:  # reading is allowed meanwhile
            assert reader.all_ids == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with cache.CacheWriter(path, KEY, LAYERS, DIM) as writer:  # a dead owner's lock is free
        assert writer.add_ids(["a/1"]) == 1


def test_forked_children_do_not_keep_a_dead_writers_lock(tmp_path):
    path = tmp_path / "clean.h5"
    holder = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(path), "--hold", "--fork"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [holder.stdout.readline().split() for _ in range(2)]
    child = next(int(words[1]) for words in lines if words[0] == "ready")
    try:
        with pytest.raises(CacheLockedError):
            cache.CacheWriter(path, KEY, LAYERS, DIM)
        holder.kill()
        holder.wait()
        os.kill(child, 0)  # the forked child still runs, with the parent's descriptors
        with cache.CacheWriter(path, KEY, LAYERS, DIM) as writer:
            assert writer.ids == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_second_writer_in_the_same_process_is_refused(tmp_path):
    path = tmp_path / "clean.h5"
    with (
        cache.CacheWriter(path, KEY, LAYERS, DIM),
        pytest.raises(CacheLockedError, match=str(path)),
    ):
        cache.CacheWriter(path, KEY, LAYERS, DIM)
    with cache.CacheWriter(path, KEY, LAYERS, DIM):
        pass
