"""Sharded extraction (`--shard K/N`), `ser cache merge`, and extraction on a Dask LocalCluster."""

from __future__ import annotations

import json
import logging
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import cache, manifest
from ssl_ser.cache import shards
from ssl_ser.cli.main import cli
from ssl_ser.errors import (
    CacheError,
    CacheKeyMismatchError,
    CacheLockedError,
    ConfigError,
    SerError,
)
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.extract import runner as extract_runner
from ssl_ser.extract.cluster import extract_on_dask, task_device, task_resources, use_gpus
from ssl_ser.extract.sharding import assign_shards, parse_shard, shard_seconds
from ssl_ser.testing import write_garbage

from .helpers import make_manifest

# Unequal lengths: a few long utterances among many short ones, as in real corpora.
SECONDS = [2.4, 0.3, 0.35, 2.0, 0.3, 0.4, 0.3, 1.6, 0.45, 0.3, 0.3, 0.5, 0.3]
# One utterance per forward pass in every run, so a shard computes exactly what one process does.
ONE_PER_BATCH = 0.05


def two_corpora(folder) -> pd.DataFrame:
    """Two corpora in one manifest, rows deliberately not in canonical order, one bad file."""
    first = make_manifest(folder, SECONDS, corpus="toy")
    second = make_manifest(folder, SECONDS[:5], corpus="other")
    write_garbage(first.loc[4, "path"])  # recorded as failed, and must survive the merge
    table = pd.concat([first.iloc[::-1], second]).reset_index(drop=True)
    return manifest.validate(table)


def extract_shards(table, config, cache_dir, count, **options) -> None:
    for number in range(1, count + 1):
        extract(table, config, cache_dir, shard=(number, count), workers=0, **options)


def assert_same_caches(expected_dir, actual_dir) -> None:
    """Same cache files, each with the same key, ids, states, reasons, fingerprints and arrays."""
    expected = cache.list_caches(expected_dir)
    actual = cache.list_caches(actual_dir)
    assert [p.relative_to(expected_dir) for p in expected] == [
        p.relative_to(actual_dir) for p in actual
    ]
    for one, other in zip(expected, actual, strict=True):
        with cache.open(one) as a, cache.open(other) as b:
            assert a.key == b.key and a.layers == b.layers and a.poolings == b.poolings
            assert a.all_ids == b.all_ids and a.ids == b.ids
            assert a.manifest_digest == b.manifest_digest
            assert a.storage_dtype == b.storage_dtype
            pd.testing.assert_frame_equal(a.failures, b.failures)
            np.testing.assert_array_equal(a.fingerprints, b.fingerprints)
            for pooling in a.poolings:
                for layer in a.layers:
                    np.testing.assert_array_equal(a.read(layer, pooling), b.read(layer, pooling))
                np.testing.assert_array_equal(
                    a.read_rows(a.ids, pooling), b.read_rows(b.ids, pooling)
                )


# ------------------------------------------------------------------ assignment


def test_parse_shard_counts_from_one_and_names_bad_values():
    assert parse_shard("2/8") == (2, 8) and parse_shard(" 8 / 8 ") == (8, 8)
    with pytest.raises(ConfigError, match=r"shard 0/3: K must be between 1 and 3.*K\+1"):
        parse_shard("0/3")
    with pytest.raises(ConfigError, match="shard 4/3: K must be between 1 and 3"):
        parse_shard("4/3")
    with pytest.raises(ConfigError, match="shard count 0 must be at least 1"):
        parse_shard("1/0")
    with pytest.raises(ConfigError, match="--shard '2of8': expected K/N"):
        parse_shard("2of8")


def test_assignment_balances_duration_better_than_file_count(tmp_path):
    table = make_manifest(tmp_path, SECONDS)
    assignment = assign_shards(table, 3)
    by_duration = shard_seconds(table, assignment, 3)
    # the alternative: equal file counts in canonical order (contiguous blocks)
    canonical = table.sort_values(["corpus", "utt_id"])
    blocks = pd.Series(np.arange(len(table)) * 3 // len(table) + 1, index=canonical.index)
    by_count = shard_seconds(table, blocks.loc[table.index], 3)
    assert sum(by_duration) == pytest.approx(table["duration"].sum())
    spread = max(by_duration) - min(by_duration)
    assert spread < (max(by_count) - min(by_count)) / 3
    assert spread <= table["duration"].max() / 2  # within half the longest utterance here
    # every row in exactly one shard 1..3
    assert sorted(assignment.unique()) == [1, 2, 3]


def test_assignment_depends_on_the_rows_and_n_only(tmp_path):
    table = make_manifest(tmp_path, SECONDS)
    shuffled = table.sample(frac=1.0, random_state=4)
    original = assign_shards(table, 4)
    again = assign_shards(shuffled.reset_index(drop=True), 4)
    by_id = dict(zip(table["utt_id"], original, strict=True))
    assert dict(zip(shuffled["utt_id"], again, strict=True)) == by_id
    assert assign_shards(table, 1).eq(1).all()
    more = assign_shards(table, 20)  # more shards than rows: some get nothing
    assert more.nunique() == len(table)


# -------------------------------------------------------- shards, then merge


@pytest.mark.parametrize(
    ("model", "conditions"), [("mfcc", ["clean", "telephone"]), ("wav2vec2-group", ["clean"])]
)
def test_three_shards_merged_equal_one_process(tmp_path, model_dirs, model, conditions):
    table = two_corpora(tmp_path / "audio")
    name = model if model == "mfcc" else str(model_dirs[model])
    config = ExtractorConfig.for_model(name)
    options = {"batch_seconds": ONE_PER_BATCH, "condition": conditions}
    extract(table, config, tmp_path / "one", workers=0, **options)
    extract_shards(table, config, tmp_path / "sharded", 3, **options)

    root = tmp_path / "sharded" / config.slug()
    records = {
        corpus: [
            shards.ShardRecord.read(root / corpus / f"clean.shard-{k}-of-3.json") for k in (1, 2, 3)
        ]
        for corpus in ("toy", "other")
    }
    assert sum(len(r.ids) for r in records["toy"]) == len(SECONDS)
    # balanced over the whole manifest: each shard's audio, summed over both corpora
    seconds = [sum(records[c][k].seconds for c in records) for k in range(3)]
    counts = [sum(len(records[c][k].ids) for c in records) for k in range(3)]
    assert sum(seconds) == pytest.approx(table["duration"].sum())
    assert max(seconds) - min(seconds) < 0.5 and max(counts) - min(counts) >= 2
    toy = table[table["corpus"] == "toy"]

    summaries, errors = shards.merge_all(tmp_path / "sharded")
    assert errors == [] and len(summaries) == 2 * len(conditions)  # 2 corpora
    merged = {s.path.relative_to(tmp_path / "sharded").as_posix(): s for s in summaries}
    toy_clean = merged[f"{config.slug()}/toy/clean.h5"]
    assert (toy_clean.shards, toy_clean.rows, toy_clean.failed) == (3, len(toy), 1)
    assert not toy_clean.already_merged and len(toy_clean.removed) == 3
    assert "merged 3 shard(s)" in toy_clean.line()
    assert_same_caches(tmp_path / "one", tmp_path / "sharded")
    assert not list((tmp_path / "sharded").rglob("*.shard-*"))  # shard files removed


def test_merge_is_idempotent_and_recognises_a_merged_cache(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "c", 2)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    first = shards.merge(target, keep=True)
    stamp = target.stat().st_mtime_ns
    again = shards.merge(target, keep=True)
    assert not first.already_merged and again.already_merged
    assert "already merged from 2 shard(s)" in again.line()
    assert target.stat().st_mtime_ns == stamp  # not rebuilt
    done = shards.merge(target)  # e.g. a merge killed before it removed the shards
    assert done.already_merged and len(done.removed) == 2
    assert shards.merge_all(tmp_path / "c") == ([], [])  # nothing left to merge
    extract(table, config, tmp_path / "one", workers=0)
    assert_same_caches(tmp_path / "one", tmp_path / "c")


def test_merge_killed_while_removing_shards_is_recognised_as_done(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    table.loc[0, "path"] = str(tmp_path / "gone.wav")  # a failed row, with its reason
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "c", 3)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    shards.merge(target, keep=True)
    stamp = target.stat().st_mtime_ns
    # killed inside the removal: shard 1 gone, shard 2's file gone but its record left
    shards.shard_path(target, 1, 3).unlink()
    shards.record_path(shards.shard_path(target, 1, 3)).unlink()
    shards.shard_path(target, 2, 3).unlink()
    kept = shards.merge(target, keep=True)
    assert kept.already_merged and kept.gone == [1, 2] and kept.removed == []
    assert (kept.rows, kept.complete, kept.failed) == (len(SECONDS), len(SECONDS) - 1, 1)
    assert "already merged from 3 shard(s) (1/3, 2/3 already removed)" in kept.line()
    assert "left 2 leftover shard file(s)" in kept.line()
    summaries, errors = shards.merge_all(tmp_path / "c")
    assert errors == [] and "removed 2 leftover shard file(s)" in summaries[0].line()
    assert not list(target.parent.glob("clean.shard-*"))
    assert target.stat().st_mtime_ns == stamp  # left as it was
    extract(table, config, tmp_path / "one", workers=0)
    assert_same_caches(tmp_path / "one", tmp_path / "c")


def test_missing_shards_beside_a_cache_of_other_rows_are_still_refused(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract(table, config, tmp_path / "c", shard=(2, 3), workers=0)
    extract(table.iloc[:-1], config, tmp_path / "c", workers=0)  # a run without --shard
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    with pytest.raises(CacheError, match=r"2 of 3 shard\(s\) missing") as refused:
        shards.merge(target)
    assert "exists but is not their merge: shard 2/3" in str(refused.value)
    assert "comes from another manifest" in str(refused.value)
    assert shards.shard_path(target, 2, 3).is_file()


def test_stray_copies_beside_the_shards_are_not_shards(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "c", 2)
    folder = tmp_path / "c" / config.slug() / "toy"
    for name in ("clean.shard-3-of-4.bak", "clean.shard-1-of-3.h5~", "clean.shard-2-of-3.json.1"):
        (folder / name).write_bytes(b"an editor's or a user's copy")
    summary = shards.merge(folder / "clean.h5")
    assert (summary.shards, summary.rows) == (2, len(SECONDS))
    assert (folder / "clean.shard-3-of-4.bak").is_file()  # left alone


def test_a_shard_started_beside_a_merged_cache_warns(tmp_path, caplog):
    table = make_manifest(tmp_path / "audio", SECONDS[:4])
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "c", 2)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    assert not [r for r in caplog.records if "already exists" in r.getMessage()]
    shards.merge(target)
    bigger = make_manifest(tmp_path / "audio", [*SECONDS[:4], 0.9])  # one utterance more
    with caplog.at_level(logging.WARNING, logger="ssl_ser.extract.runner"):
        extract(bigger, config, tmp_path / "c", shard=(1, 2), workers=0)
    (warning,) = [r.getMessage() for r in caplog.records if "already exists" in r.getMessage()]
    assert f"{target} already exists; shard 1/2 does not read it" in warning
    assert "run `ser extract` without --shard" in warning


def test_merge_refuses_a_missing_shard_naming_it(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    for number in (1, 3):
        extract(table, config, tmp_path / "c", shard=(number, 3), workers=0)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    with pytest.raises(
        CacheError, match=r"1 of 3 shard\(s\) missing: 2/3 \(no clean.shard-2-of-3.h5\)"
    ):
        shards.merge(target)
    assert not target.exists()


def test_merge_refuses_an_utterance_in_two_shards_naming_it(tmp_path, monkeypatch):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract(table, config, tmp_path / "c", shard=(1, 2), workers=0)
    own = shards.ShardRecord.read(
        tmp_path / "c" / config.slug() / "toy" / "clean.shard-1-of-2.json"
    ).ids
    # shard 2 made by another assignment (another release, a bug): it takes every row
    monkeypatch.setattr(
        extract_runner, "assign_shards", lambda rows, n: pd.Series(2, index=rows.index)
    )
    extract(table, config, tmp_path / "c", shard=(2, 2), workers=0)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    with pytest.raises(CacheError, match="is in two shards") as refused:
        shards.merge(target)
    message = str(refused.value)
    assert f"utterance {own[0]!r}" in message
    assert "clean.shard-1-of-2.h5" in message and "clean.shard-2-of-2.h5" in message


def test_merge_names_the_shard_already_holding_a_manifest_row(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "c", 2)
    folder = tmp_path / "c" / config.slug() / "toy"
    first = shards.ShardRecord.read(folder / "clean.shard-1-of-2.json")
    second = shards.ShardRecord.read(folder / "clean.shard-2-of-2.json")
    second.positions[0] = first.positions[0]  # a record made by a broken assignment
    second.write(folder / "clean.shard-2-of-2.json")
    with pytest.raises(CacheError, match="where shard 1/2") as refused:
        shards.merge(folder / "clean.h5")
    message = str(refused.value)
    assert f"puts {second.ids[0]!r} at manifest row {first.positions[0]}" in message
    assert f"shard 1/2 ({folder / 'clean.shard-1-of-2.h5'}) puts {first.ids[0]!r}" in message


def test_non_finite_durations_are_named(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS[:4])
    table["duration"] = table["duration"].astype(float)
    table.loc[1, "duration"] = float("nan")
    table.loc[3, "duration"] = float("inf")
    with pytest.raises(ConfigError, match="2 duration.s. that are not finite") as refused:
        assign_shards(table, 2)
    assert f"{table.loc[1, 'utt_id']} (nan), {table.loc[3, 'utt_id']} (inf)" in str(refused.value)


def test_merge_refuses_a_shard_of_another_key_naming_the_fields(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    mfcc = ExtractorConfig.for_model("mfcc")
    extract(table, mfcc, tmp_path / "c", shard=(1, 2), workers=0)
    logmel = ExtractorConfig.for_model("logmel")
    extract(table, logmel, tmp_path / "other", shard=(2, 2), workers=0)
    folder = tmp_path / "c" / mfcc.slug() / "toy"
    foreign = tmp_path / "other" / logmel.slug() / "toy"
    for suffix in (".h5", ".json"):  # a shard of another extractor copied into the folder
        shutil.copy(foreign / f"clean.shard-2-of-2{suffix}", folder)
    with pytest.raises(CacheKeyMismatchError, match="another key") as refused:
        shards.merge(folder / "clean.h5")
    message = str(refused.value)
    assert "shard 2/2" in message and "clean.shard-2-of-2.h5" in message
    assert 'model: stored "mfcc", requested "logmel"' in message


def test_merge_refuses_unfinished_mixed_and_foreign_states(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    folder = tmp_path / "c" / config.slug() / "toy"
    target = folder / "clean.h5"
    extract_shards(table, config, tmp_path / "c", 2)
    # a shard of a different manifest (a row more)
    bigger = make_manifest(tmp_path / "audio", [*SECONDS, 0.7])
    extract(bigger, config, tmp_path / "c", shard=(2, 2), workers=0)
    with pytest.raises(CacheError, match="made from different manifests") as refused:
        shards.merge(target)
    assert f"{len(SECONDS)} rows" in str(refused.value) and f"{len(SECONDS) + 1} rows" in str(
        refused.value
    )
    extract(table, config, tmp_path / "c", shard=(2, 2), workers=0)
    # shards of two shard counts beside each other
    extract(table, config, tmp_path / "c", shard=(1, 3), workers=0)
    with pytest.raises(CacheError, match="different shard counts") as refused:
        shards.merge(target)
    assert "clean.shard-1-of-3.h5" in str(refused.value)
    for path in folder.glob("clean.shard-1-of-3.*"):
        path.unlink()
    # a shard still being written
    writer = cache.CacheWriter(folder / "clean.shard-2-of-2.h5", **_layout(target.parent))
    with writer, pytest.raises(CacheLockedError, match="clean.shard-2-of-2.h5"):
        shards.merge(target)
    # an existing cache that is not these shards' merge
    extract(table.iloc[:3], config, tmp_path / "c", workers=0)
    with pytest.raises(
        CacheError, match="already exists and is not the merge of its shards"
    ) as refused:
        shards.merge(target)
    absent = ", ".join(table["utt_id"].iloc[3:8])
    assert f"it holds 3 rows, the manifest {len(SECONDS)}" in str(refused.value)
    assert f"{len(SECONDS) - 3} not in it (e.g. {absent})" in str(refused.value)
    target.unlink()
    assert shards.merge(target).rows == len(SECONDS)


def test_merge_refuses_shards_of_one_manifest_in_two_row_orders(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract(table, config, tmp_path / "c", shard=(1, 2), workers=0)
    # the same rows, listed in another order (a manifest prepared again, another node)
    reversed_rows = manifest.validate(table.iloc[::-1].reset_index(drop=True))
    extract(reversed_rows, config, tmp_path / "c", shard=(2, 2), workers=0)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    with pytest.raises(CacheError, match="same rows in a different row order") as refused:
        shards.merge(target)
    message = str(refused.value)
    assert "clean.shard-1-of-2.h5" in message and "clean.shard-2-of-2.h5" in message
    assert not target.exists()
    extract(table, config, tmp_path / "c", shard=(2, 2), workers=0)  # from the same manifest
    shards.merge(target)
    extract(table, config, tmp_path / "one", workers=0)
    assert_same_caches(tmp_path / "one", tmp_path / "c")


def test_a_shard_record_of_another_version_is_refused(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS[:3])
    config = ExtractorConfig.for_model("mfcc")
    extract(table, config, tmp_path / "c", shard=(1, 1), workers=0)
    path = tmp_path / "c" / config.slug() / "toy" / "clean.shard-1-of-1.json"
    payload = json.loads(path.read_text())
    assert len(payload["order_digest"]) == 64
    payload["version"] = 1  # written before order digests were recorded
    path.write_text(json.dumps(payload))
    with pytest.raises(CacheError, match="has version 1; this toolkit reads version 2"):
        shards.ShardRecord.read(path)


def test_a_second_launch_of_a_running_shard_leaves_its_record_alone(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract(table, config, tmp_path / "c", shard=(2, 2), workers=0)
    folder = tmp_path / "c" / config.slug() / "toy"
    record = folder / "clean.shard-2-of-2.json"
    before = record.read_bytes()
    bigger = make_manifest(tmp_path / "audio", [*SECONDS, 0.7])  # e.g. a newer manifest
    writer = cache.CacheWriter(folder / "clean.shard-2-of-2.h5", **_layout(folder))
    with writer, pytest.raises(CacheLockedError, match="clean.shard-2-of-2.h5"):
        extract(bigger, config, tmp_path / "c", shard=(2, 2), workers=0)  # shard 2 is running
    assert record.read_bytes() == before
    assert shards.ShardRecord.read(record).corpus_rows == len(SECONDS)


def test_merge_refuses_a_record_that_does_not_describe_its_file(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "c", 2)
    folder = tmp_path / "c" / config.slug() / "toy"
    path = folder / "clean.shard-1-of-2.json"
    payload = json.loads(path.read_text())
    file_digest = cache.read_header(folder / "clean.shard-1-of-2.h5").manifest_digest
    assert payload["rows_digest"] == file_digest
    payload["rows_digest"] = "0" * 64  # a record rewritten by another run's launch
    path.write_text(json.dumps(payload))
    with pytest.raises(CacheError, match="its record does not describe its file") as refused:
        shards.merge(folder / "clean.h5")
    assert f"{file_digest[:12]} in the file" in str(refused.value)
    assert "shard 1/2" in str(refused.value)


def _layout(folder) -> dict:
    header = cache.read_header(next(folder.glob("clean.shard-2-of-2.h5")))
    return {
        "key": header.key,
        "layers": header.layers,
        "dim": header.dim,
        "poolings": header.poolings,
        "storage_dtype": header.storage_dtype,
    }


def test_an_unfinished_shard_is_refused_then_resumes(tmp_path, monkeypatch):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    extract(table, config, tmp_path / "c", shard=(2, 2), workers=0)

    original = extract_runner._Job._process
    calls = []

    def crash_after_two(self, batch, writer, summary):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between two committed batches
        calls.append(len(batch))
        original(self, batch, writer, summary)

    monkeypatch.setattr(extract_runner._Job, "_process", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract(table, config, tmp_path / "c", shard=(1, 2), workers=0, batch_seconds=0.5)
    monkeypatch.undo()
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    with pytest.raises(CacheError, match=r"shard 1/2 .* has not finished: \d+ of \d+ utterance"):
        shards.merge(target)
    (resumed,) = extract(table, config, tmp_path / "c", shard=(1, 2), workers=0)
    assert resumed.already_done == sum(calls) and resumed.extracted > 0
    shards.merge(target)
    extract(table, config, tmp_path / "one", workers=0)
    assert_same_caches(tmp_path / "one", tmp_path / "c")


# ------------------------------------------------------------------------ dask


def test_dask_local_cluster_gives_the_files_of_the_manual_path(tmp_path):
    table = two_corpora(tmp_path / "audio")
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "manual", 3)
    shards.merge_all(tmp_path / "manual")
    summaries = extract_on_dask(
        table,
        config,
        tmp_path / "dask",
        address="local",
        shards_count=3,
        workers=0,
        local_processes=False,
    )
    assert_same_caches(tmp_path / "manual", tmp_path / "dask")
    by_corpus = {s.corpus: s for s in summaries}
    assert by_corpus["toy"].path == cache.cache_path(
        tmp_path / "dask", config.slug(), "toy", "clean"
    )
    assert by_corpus["toy"].extracted == len(SECONDS) - 1 and len(by_corpus["toy"].failed) == 1
    assert "toy/clean: 12 utterances" in by_corpus["toy"].line()
    assert not list((tmp_path / "dask").rglob("*.shard-*"))


def test_dask_cuda_without_gpu_workers_is_refused(tmp_path):
    from distributed import LocalCluster

    table = make_manifest(tmp_path / "audio", SECONDS[:3])
    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
    expected = r"no worker of .* declares one; start workers with `--resources GPU=1`"
    with cluster, pytest.raises(ConfigError, match=expected):
        extract_on_dask(
            table,
            ExtractorConfig.for_model("mfcc"),
            tmp_path / "c",
            address=cluster.scheduler_address,
            device="cuda",
            workers=0,
        )


def test_dask_merges_every_cache_and_reports_all_refusals(tmp_path):
    table = two_corpora(tmp_path / "audio")
    config = ExtractorConfig.for_model("mfcc")
    other = table[table["corpus"] == "other"]
    # a cache of the same rows but another extractor, sitting at the mfcc path
    extract(other, ExtractorConfig.for_model("logmel"), tmp_path / "x", workers=0)
    blocking = cache.cache_path(tmp_path / "c", config.slug(), "other", "clean")
    blocking.parent.mkdir(parents=True)
    shutil.copy(next((tmp_path / "x").rglob("clean.h5")), blocking)
    with pytest.raises(CacheError, match=r"1 of 2 cache file\(s\) could not be merged") as refused:
        extract_on_dask(
            table, config, tmp_path / "c", shards_count=2, workers=0, local_processes=False
        )
    assert f"{blocking} already exists and is not the merge" in str(refused.value)
    assert 'model: stored "logmel", requested "mfcc"' in str(refused.value)
    # the other corpus was merged all the same
    merged = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    with cache.open(merged) as reader:
        assert len(reader.all_ids) == len(SECONDS)
    assert len(list(blocking.parent.glob("clean.shard-*.h5"))) == 2


def test_dask_gpu_runs_send_cuda_and_ask_for_a_gpu():
    assert use_gpus("cuda:1", 0) and use_gpus("cuda", 0) and use_gpus("auto", 2)
    assert not use_gpus("auto", 0) and not use_gpus("cpu", 2)
    assert task_device("cuda:1", True) == "cuda" and task_device("cpu", False) == "cpu"
    assert task_device("auto", False) == "auto"
    assert task_resources(True) == {"GPU": 1} and task_resources(False) is None


@pytest.mark.parametrize("device", ["cuda:1", "auto"])
def test_dask_on_gpu_workers_runs_each_shard_on_the_workers_cuda(tmp_path, monkeypatch, device):
    from distributed import LocalCluster

    table = make_manifest(tmp_path / "audio", SECONDS[:4])
    config = ExtractorConfig.for_model("mfcc")
    real = extract_runner.extract
    sent = []

    def record_device(*args, **kwargs):
        sent.append(kwargs["device"])
        return real(*args, **{**kwargs, "device": "cpu"})  # no GPU here

    monkeypatch.setattr(extract_runner, "extract", record_device)  # the worker is a thread
    cluster = LocalCluster(
        n_workers=1,
        processes=False,
        threads_per_worker=1,
        resources={"GPU": 1},
        dashboard_address=None,
    )
    with cluster:
        (summary,) = extract_on_dask(
            table, config, tmp_path / "c", address=cluster.scheduler_address, device=device
        )
    assert sent == ["cuda"]  # one shard per declared GPU, on the GPU the worker sees
    assert summary.extracted == 4


def test_a_failing_shard_is_named_and_the_others_are_kept(tmp_path, monkeypatch):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    real = extract_runner.extract

    def shard_one_fails(*args, **kwargs):
        if kwargs["shard"] == (1, 2):
            raise ConfigError("out of memory on cuda:0 in a batch of 3 segment(s)")
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_runner, "extract", shard_one_fails)  # the worker is a thread here
    with pytest.raises(ConfigError, match=r"1 of 2 shard\(s\) failed") as refused:
        extract_on_dask(
            table,
            config,
            tmp_path / "c",
            address="local",
            shards_count=2,
            workers=0,
            local_processes=False,
        )
    assert "shard 1/2: out of memory on cuda:0" in str(refused.value)
    folder = tmp_path / "c" / config.slug() / "toy"
    assert (folder / "clean.shard-2-of-2.h5").is_file() and not (folder / "clean.h5").exists()
    with pytest.raises(ConfigError, match="batch seconds -1.0 must be positive"):
        extract_on_dask(table, config, tmp_path / "c", address="nowhere:1", batch_seconds=-1.0)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"condition": "phone"}, "phone"),
        ({"telephone_source": "copies"}, "copies"),
        ({"storage_dtype": "float8"}, "float8"),
        ({"workers": -2}, "workers -2 must be an integer >= 0"),
        ({"device": "gpu0"}, "gpu0"),
        ({"device": "cpu", "dtype": "float16"}, "dtype 'float16' is not supported on CPU"),
    ],
)
def test_dask_refuses_bad_options_before_reaching_a_cluster(
    tmp_path, model_dirs, options, expected
):
    table = make_manifest(tmp_path / "audio", SECONDS[:2])
    options = dict(options)
    dtype = options.pop("dtype", "float32")
    config = ExtractorConfig.for_model(str(model_dirs["wav2vec2-group"]), dtype=dtype)
    # a cluster at "nowhere" would fail only after a 30 s connection timeout
    with pytest.raises(SerError, match=re.escape(expected)):
        extract_on_dask(table, config, tmp_path / "c", address="nowhere:1", **options)
    assert not (tmp_path / "c").exists()


def test_a_dask_rerun_resumes_the_shard_count_on_disk(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    # a first --dask run on a 2-worker cluster finished shard 1 of 2, then failed
    extract(table, config, tmp_path / "c", shard=(1, 2), workers=0)
    done = len(shards.ShardRecord.read(_folder(tmp_path, config) / "clean.shard-1-of-2.json").ids)
    # the re-run's cluster has one worker thread (default N would be 1)
    (summary,) = extract_on_dask(
        table, config, tmp_path / "c", address="local", workers=0, local_processes=False
    )
    assert summary.already_done == done and summary.extracted == len(SECONDS) - done
    extract(table, config, tmp_path / "one", workers=0)
    assert_same_caches(tmp_path / "one", tmp_path / "c")


def test_dask_refuses_before_any_work_what_the_merge_would_refuse(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    config = ExtractorConfig.for_model("mfcc")
    folder = _folder(tmp_path, config)
    nowhere = {"address": "nowhere:1", "workers": 0}  # reaching a cluster would fail otherwise
    extract(table, config, tmp_path / "c", shard=(1, 2), workers=0)
    with pytest.raises(ConfigError, match="--shards 3, but shard files of 2 shards") as refused:
        extract_on_dask(table, config, tmp_path / "c", shards_count=3, **nowhere)
    assert "clean.shard-1-of-2.h5" in str(refused.value) and "give --shards 2" in str(refused.value)
    extract(table, config, tmp_path / "c", shard=(1, 3), workers=0)
    with pytest.raises(CacheError, match="different shard counts") as refused:
        extract_on_dask(table, config, tmp_path / "c", **nowhere)
    assert "clean.shard-1-of-3.h5" in str(refused.value)
    for path in folder.glob("clean.shard-*"):
        path.unlink()
    # a cache from a run without --shard, of another manifest (two rows fewer)
    extract(table.iloc[:-2], config, tmp_path / "c", workers=0)
    dropped = table["utt_id"].iloc[-2:].tolist()
    with pytest.raises(ConfigError, match="already exists and its rows are not") as refused:
        extract_on_dask(table, config, tmp_path / "c", **nowhere)
    message = str(refused.value)
    assert f"it holds {len(SECONDS) - 2} rows, the manifest {len(SECONDS)}" in message
    assert f"2 not in it (e.g. {', '.join(dropped)})" in message
    assert not list(folder.glob("clean.shard-*"))


def _folder(tmp_path, config, corpus="toy"):
    return tmp_path / "c" / config.slug() / corpus


# ------------------------------------------------------------------------- CLI


def test_cli_shards_then_merge(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    path = manifest.write(table, tmp_path / "m.csv")
    base = ["extract", str(path), "--model", "mfcc", "--cache-dir", str(tmp_path / "c")]
    base += ["--workers", "0", "--no-progress"]
    for number in (1, 2):
        result = CliRunner().invoke(cli, [*base, "--shard", f"{number}/2"])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].startswith("cache: ") and lines[0].endswith(
            f"toy/clean.shard-{number}-of-2.h5"
        )
        assert lines[1].startswith("mfcc toy/clean: ")
        hint = f"when all 2 shards are done: ser cache merge {tmp_path / 'c'}"
        assert lines[-1] == f"shard {number}/2 done; {hint}"
    merged = CliRunner().invoke(cli, ["cache", "merge", str(tmp_path / "c"), "--keep-shards"])
    assert merged.exit_code == 0, merged.output
    assert (
        f"merged 2 shard(s), {len(SECONDS)} rows ({len(SECONDS)} complete, 0 failed)"
        in merged.output
    )
    assert (
        merged.stdout.splitlines()[-1]
        == f"{tmp_path / 'c'}: 1 cache file(s) merged, 0 already merged, 0 refused"
    )
    again = CliRunner().invoke(cli, ["cache", "merge", str(tmp_path / "c")])
    assert again.exit_code == 0 and "already merged from 2 shard(s)" in again.output
    assert "removed its 2 shard file(s)" in again.output
    nothing = CliRunner().invoke(cli, ["cache", "merge", str(tmp_path / "c")])
    assert nothing.exit_code == 0 and "no shard files to merge" in nothing.output


def test_cli_merge_names_what_it_refuses_and_exits_1(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    extract(table, ExtractorConfig.for_model("mfcc"), tmp_path / "c", shard=(2, 3), workers=0)
    result = CliRunner().invoke(cli, ["cache", "merge", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert "cannot merge:" in result.output and "2 of 3 shard(s) missing: 1/3, 3/3" in result.output
    assert "0 cache file(s) merged, 0 already merged, 1 refused" in result.output


def test_cli_refuses_bad_shard_options_in_words(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS[:2])
    path = manifest.write(table, tmp_path / "m.csv")
    base = ["extract", str(path), "--model", "mfcc", "--cache-dir", str(tmp_path / "c")]
    cases = {
        ("--shard", "0/4"): "shard 0/4: K must be between 1 and 4",
        ("--shard", "x"): "expected K/N",
        ("--shard", "1/2", "--dask", "local"): "--shard and --dask do not combine",
        ("--shards", "3"): "--shards applies to --dask runs",
        ("--keep-shards",): "--keep-shards applies to --dask runs",
    }
    for extra, expected in cases.items():
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 1 and expected in result.output, (extra, result.output)
    assert not (tmp_path / "c").exists()


@pytest.mark.slow  # starts a LocalCluster with a worker process (imports torch there)
def test_cli_dask_local_equals_the_manual_path(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS)
    path = manifest.write(table, tmp_path / "m.csv")
    base = ["extract", str(path), "--model", "mfcc", "--workers", "0", "--no-progress"]
    result = CliRunner().invoke(
        cli, [*base, "--cache-dir", str(tmp_path / "dask"), "--dask", "local", "--shards", "2"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("toy/clean.h5")
    assert f"mfcc toy/clean: {len(SECONDS)} utterances" in result.stdout
    assert "extract on dask (1 worker(s)" in result.output and "2/2 shards" in result.output
    extract_shards(table, ExtractorConfig.for_model("mfcc"), tmp_path / "manual", 2)
    shards.merge_all(tmp_path / "manual")
    assert_same_caches(tmp_path / "manual", tmp_path / "dask")


def test_a_shard_chunk_failing_its_checksum_is_one_line_and_repair_then_merge_works(tmp_path):
    table = make_manifest(tmp_path / "audio", SECONDS[:6])
    config = ExtractorConfig.for_model("mfcc")
    extract_shards(table, config, tmp_path / "c", 2)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    first = shards.shard_path(target, 1, 2)
    with h5py.File(first, "r") as file:
        offset = file["features/mean"].id.get_chunk_info(0).byte_offset
    with open(first, "r+b") as handle:  # one flipped bit on disk, as a failing drive does
        handle.seek(offset + 20)
        value = handle.read(1)[0]
        handle.seek(offset + 20)
        handle.write(bytes([value ^ 0x10]))
    result = CliRunner().invoke(cli, ["cache", "merge", str(tmp_path / "c"), "--no-progress"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"cannot merge: {first}: the chunk of layer 0, slots 0-")
    assert lines[0].endswith(
        f"run `ser cache verify --repair {first}` to mark its rows for re-extraction"
    )
    assert "Traceback" not in result.output and not target.exists()
    repaired = CliRunner().invoke(cli, ["cache", "verify", "--repair", str(first)])
    assert repaired.exit_code == 0, repaired.output
    extract(table, config, tmp_path / "c", shard=(1, 2), workers=0)
    extract(table, config, tmp_path / "whole", workers=0)
    merged = CliRunner().invoke(cli, ["cache", "merge", str(tmp_path / "c"), "--no-progress"])
    assert merged.exit_code == 0, merged.output
    assert_same_caches(tmp_path / "whole", tmp_path / "c")


def test_a_dask_rerun_of_a_finished_cache_reads_it_and_starts_nothing(tmp_path, monkeypatch):
    """No cluster is reached and the cache file is left alone; changed inputs do reach it."""

    def reached(*args):
        raise RuntimeError("cluster reached")

    monkeypatch.setattr("ssl_ser.extract.cluster._client", reached)
    table = two_corpora(tmp_path / "audio")
    config = ExtractorConfig.for_model("mfcc")
    extract(table, config, tmp_path / "c", workers=0)
    target = cache.cache_path(tmp_path / "c", config.slug(), "toy", "clean")
    before = target.stat().st_mtime_ns
    nowhere = {"address": "nowhere:1", "workers": 0}
    summaries = extract_on_dask(table, config, tmp_path / "c", **nowhere)
    by_corpus = {s.corpus: s for s in summaries}
    assert by_corpus["toy"].already_done == len(SECONDS) and by_corpus["toy"].extracted == 0
    assert by_corpus["other"].already_done == 5 and by_corpus["toy"].path == target
    assert target.stat().st_mtime_ns == before
    assert not list((tmp_path / "c").rglob("*.shard-*"))
    # audio changed since (another size): there is work, so the run goes to the cluster
    path = table.loc[table["corpus"].eq("other"), "path"].iloc[0]
    write_garbage(path)
    with pytest.raises(RuntimeError, match="cluster reached"):
        extract_on_dask(table, config, tmp_path / "c", **nowhere)
    # another model configuration is another cache: nothing of it is finished
    with pytest.raises(RuntimeError, match="cluster reached"):
        extract_on_dask(table, ExtractorConfig.for_model("logmel"), tmp_path / "c", **nowhere)
