"""`ser extract` killed with SIGKILL part-way, several times, then re-run, equals one clean run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ssl_ser import cache, manifest
from ssl_ser.errors import CacheError
from ssl_ser.extract import ExtractorConfig, extract

from .helpers import lengths, make_manifest

BATCH_SECONDS = "0.8"
# (batches committed before the kill, extra delay so the kill lands mid-batch)
KILL_POINTS = ((1, 0.0), (2, 0.02), (3, 0.05))
CLI = "from ssl_ser.cli.main import cli; cli()"


def ser_extract(manifest_path, model, cache_dir) -> list[str]:
    return [
        sys.executable,
        "-c",
        CLI,
        "-vv",
        "extract",
        str(manifest_path),
        "--model",
        str(model),
        "--cache-dir",
        str(cache_dir),
        "--batch-seconds",
        BATCH_SECONDS,
        "--workers",
        "1",
        "--no-progress",
    ]


def run_and_kill(command: list[str], committed: int, delay: float) -> int:
    """Start `command`, SIGKILL its main process once `committed` batches are logged.

    Only the main process is killed, as a crash would: its DataLoader worker may
    outlive it for a few seconds. Returns the process group, to clean up later.
    """
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True
    )
    with process.stderr:
        seen = 0
        for line in process.stderr:
            seen += "committed batch" in line
            if seen >= committed:
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                break
    assert process.wait(timeout=60) == -signal.SIGKILL, "run ended before it was killed"
    return process.pid


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_gone(group: int, seconds: float = 10.0) -> bool:
    """Whether every process of the group has exited within `seconds`."""
    deadline = time.monotonic() + seconds
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not group_alive(group)


def complete_ids(path) -> set[str]:
    with cache.open(path) as reader:
        return set(reader.ids)


@pytest.mark.slow  # three subprocesses that each import torch
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, model_dirs):
    table = make_manifest(tmp_path / "audio", lengths(24, 0.4, 1.2, seed=3))
    manifest_path = manifest.write(table, tmp_path / "manifest.csv")
    model = model_dirs["wav2vec2-group"]
    config = ExtractorConfig(model=str(model))
    (reference,) = extract(table, config, tmp_path / "reference", workers=0, batch_seconds=60)

    cache_dir = tmp_path / "killed"
    path = cache_dir / config.slug() / "toy" / "clean.h5"
    done: set[str] = set()
    groups = []
    try:
        for committed, delay in KILL_POINTS:
            # the next run starts at once: an orphaned worker must not hold the cache lock
            groups.append(
                run_and_kill(ser_extract(manifest_path, model, cache_dir), committed, delay)
            )
            now = complete_ids(path)
            assert done <= now and len(now) < len(table), (len(done), len(now))
            done = now
        # loader workers die with their killed parent instead of lingering as orphans
        assert all(wait_until_gone(group) for group in groups)
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    assert done, "no batch survived the kills"

    (resumed,) = extract(table, config, cache_dir, workers=1, batch_seconds=0.8)
    assert resumed.already_done == len(done)
    assert resumed.extracted == len(table) - len(done)
    ids = sorted(table["utt_id"])
    with cache.open(path) as killed, cache.open(reference.path) as clean:
        assert sorted(killed.ids) == ids and len(killed.failures) == 0
        for pooling in ("mean", "std"):
            a, b = killed.read_rows(ids, pooling), clean.read_rows(ids, pooling)
            assert np.abs(a - b).max() <= 2e-3 * np.abs(b).max()


def test_cli_prints_the_cache_path_and_a_summary(tmp_path, model_dirs):
    from click.testing import CliRunner

    from ssl_ser.cli.main import cli
    from ssl_ser.testing import emodb

    emodb.make_tree(tmp_path / "emodb", seconds=0.3)
    command = ["extract", "emodb", "--root", str(tmp_path / "emodb"), "--model"]
    command += [str(model_dirs["hubert"]), "--cache-dir", str(tmp_path / "c"), "--workers", "0"]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cache: ") and lines[0].endswith("emodb/clean.h5")
    count = len(emodb.file_names())
    model = model_dirs["hubert"].name
    assert (
        lines[1].startswith(f"{model} emodb/clean: {count} utterances") and "3 layers" in lines[1]
    )
    assert "audio s/s" in lines[1]
    again = CliRunner().invoke(cli, command)
    assert "0 utterances" in again.output and f"{count} already cached" in again.output


def test_cli_reports_bad_input_in_words(tmp_path):
    from click.testing import CliRunner

    from ssl_ser.cli.main import cli

    result = CliRunner().invoke(cli, ["extract", "nowhere.csv", "--model", "mfcc"])
    assert result.exit_code == 1
    assert "neither a manifest file nor a corpus name" in result.output
    result = CliRunner().invoke(cli, ["extract", "emodb", "--model", "mfcc"])
    assert result.exit_code == 1 and "needs --root" in result.output


def test_cli_module_does_not_import_torch():
    code = "import ssl_ser.cli.extract, ssl_ser.extract, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_no_progress_silences_every_bar_and_says_what_was_cached(tmp_path, model_dirs):
    from click.testing import CliRunner

    from ssl_ser import corpora, manifest
    from ssl_ser.cli.main import cli
    from ssl_ser.testing import emodb

    emodb.make_tree(tmp_path / "emodb", seconds=0.3)
    table = corpora.load("emodb", tmp_path / "emodb")
    first = manifest.write(table.iloc[:10], tmp_path / "first.csv")
    whole = manifest.write(table, tmp_path / "whole.csv")
    options = ["--model", str(model_dirs["hubert"]), "--cache-dir", str(tmp_path / "c")]
    options += ["--workers", "0"]
    shown = CliRunner().invoke(cli, ["extract", str(first), *options])
    assert shown.exit_code == 0, shown.output
    assert "Loading weights" in shown.output and "extract emodb/clean" in shown.output
    quiet = CliRunner().invoke(cli, ["extract", str(whole), *options, "--no-progress"])
    assert quiet.exit_code == 0, quiet.output
    for bar in ("Loading weights", "%|"):
        assert bar not in quiet.output
    done = f"extract emodb/clean: {quiet_seconds(table, 10)}/{quiet_seconds(table, 10)} audio s"
    assert f"{done} (100%)" in quiet.output and f"- {model_dirs['hubert'].name}" in quiet.output
    rest = len(table) - 10
    assert f"emodb/clean: 10 of {len(table)} utterance(s) already cached" in quiet.output
    assert f"extracting {rest}" in quiet.output
    model = model_dirs["hubert"].name
    assert quiet.stdout.splitlines()[1].startswith(f"{model} emodb/clean: {rest} utterances")


def quiet_seconds(table, skip: int) -> str:
    """Audio seconds of the rows after the first `skip`, as the quiet progress line shows them."""
    return f"{table['duration'].iloc[skip:].sum():.0f}"


@pytest.mark.slow  # a subprocess that imports torch
def test_a_killed_shard_resumes_and_merges_to_the_uninterrupted_result(tmp_path, model_dirs):
    from ssl_ser.cache import shards

    table = make_manifest(tmp_path / "audio", lengths(16, 0.4, 1.2, seed=5))
    manifest_path = manifest.write(table, tmp_path / "manifest.csv")
    model = model_dirs["wav2vec2-group"]
    config = ExtractorConfig(model=str(model))
    (reference,) = extract(table, config, tmp_path / "reference", workers=0, batch_seconds=0.8)

    cache_dir = tmp_path / "killed"
    target = cache_dir / config.slug() / "toy" / "clean.h5"
    command = [*ser_extract(manifest_path, model, cache_dir), "--shard", "1/2"]
    group = run_and_kill(command, committed=1, delay=0.0)
    try:
        assert wait_until_gone(group)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    shard_file = shards.shard_path(target, 1, 2)
    done = complete_ids(shard_file)
    assert done, "no batch survived the kill"
    extract(table, config, cache_dir, workers=0, batch_seconds=0.8, shard=(2, 2))
    with pytest.raises(CacheError, match="shard 1/2 .* has not finished"):
        shards.merge(target)
    (resumed,) = extract(table, config, cache_dir, workers=1, batch_seconds=0.8, shard=(1, 2))
    assert resumed.already_done == len(done) and resumed.extracted > 0
    shards.merge(target)
    ids = sorted(table["utt_id"])
    with cache.open(target) as merged, cache.open(reference.path) as clean:
        assert merged.all_ids == clean.all_ids and len(merged.failures) == 0
        for pooling in ("mean", "std"):
            a, b = merged.read_rows(ids, pooling), clean.read_rows(ids, pooling)
            assert np.abs(a - b).max() <= 2e-3 * np.abs(b).max()
