"""Which rows a sweep classifies: explicit label lists, subset manifests, rows without features."""

import logging

import numpy as np
import pandas as pd
import pytest

from ssl_ser import cache
from ssl_ser.classify.dataset import build_datasets
from ssl_ser.classify.features import CacheFeatures
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.errors import CacheError

from .conftest import BASIC4, corpus

SHARED = "angry,happy,sad,neutral,fear"  # the canonical spelling of these five
FAST = {
    "bootstrap": 20,
    "split_options": SplitOptions(folds=2),
    "threads": 1,
    "layers": ("2",),
    "classifiers": ("logreg",),
}


@pytest.fixture(scope="module")
def seven():
    """A corpus with emotions a cross-corpus study leaves out (boredom, surprise)."""
    return corpus("seven", n_utts=210, emotions=(*BASIC4, "fear", "boredom", "surprise"))


def test_an_explicit_label_list_leaves_out_other_emotions_and_counts_them(seven, caplog):
    table, features = seven
    with caplog.at_level(logging.WARNING):
        (dataset,) = build_datasets([features], table, "fear,neutral,sad,happy,angry")
    assert dataset.label_set == SHARED
    assert dataset.classes == ("angry", "happy", "sad", "neutral", "fear")
    kept = table[~table["emotion"].isin(["boredom", "surprise"])]
    assert sorted(dataset.table["utt_id"]) == sorted(kept["utt_id"])
    assert (dataset.table["label"] == dataset.table["emotion"]).all()
    counts = table["emotion"].value_counts()
    assert dataset.dropped == {"boredom": counts["boredom"], "surprise": counts["surprise"]}
    assert (
        f"leaves out {counts['boredom'] + counts['surprise']} row(s) of emotions it does not "
        f"cover: boredom {counts['boredom']}, surprise {counts['surprise']}"
    ) in caplog.text


def test_two_spellings_of_one_label_list_are_one_set_of_cells(seven, tmp_path):
    table, features = seven
    first = run_sweep(
        [features], table, SweepConfig(labels="sad,angry,fear,happy,neutral", **FAST), tmp_path
    )
    assert first.cells_run == 2 and set(first.results["labels"]) == {SHARED}
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert not set(predictions["label"]) & {"boredom", "surprise"}
    assert set(predictions["utt_id"]).isdisjoint(
        table.loc[table["emotion"].isin(["boredom", "surprise"]), "utt_id"]
    )
    again = run_sweep(
        [features], table, SweepConfig(labels=" angry, happy,sad,neutral,fear", **FAST), tmp_path
    )
    assert (again.cells_run, again.cells_skipped) == (0, 2)
    basic = run_sweep(
        [features], table, SweepConfig(labels="neutral,sad,happy,angry", **FAST), tmp_path
    )
    assert basic.cells_run == 2 and set(basic.results["labels"]) == {SHARED, "basic4"}


def test_a_manifest_that_is_a_subset_of_the_cache_uses_only_its_rows(alpha, tmp_path, caplog):
    table, features = alpha
    subset = table[np.arange(len(table)) % 3 != 0]  # 160 of 240, spread over the cache
    with caplog.at_level(logging.WARNING):
        (dataset,) = build_datasets([features], subset, "basic4")
    assert sorted(dataset.table["utt_id"]) == sorted(subset["utt_id"])
    assert dataset.unused == {"tiny-model": 80}
    assert "80 of 240 cached utterance(s) are not in the manifest and are not used" in caplog.text
    # each row's position finds that utterance's own features
    layer = features.layers.index("2")
    expected = np.stack(
        [features.arrays["mean"][features.ids.index(u), layer] for u in dataset.table["utt_id"]]
    )
    np.testing.assert_array_equal(features.read("2")[dataset.table["position"]], expected)
    emotions = subset.set_index("utt_id")["emotion"]
    assert (dataset.table["emotion"].to_numpy() == emotions[dataset.table["utt_id"]]).all()
    result = run_sweep([features], subset, SweepConfig(**FAST), tmp_path)
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert result.cells_run == 2
    assert sorted(predictions["utt_id"]) == sorted(subset["utt_id"])


def test_manifest_rows_without_features_are_counted_and_named(alpha, tmp_path, caplog):
    table, features = alpha
    ids = list(table["utt_id"])
    written, failed, never = ids[:200], ids[200:205], ids[205:]
    path = tmp_path / "alpha.h5"
    with cache.CacheWriter(
        path, key=features.key, layers=features.layers, dim=features.dim, storage_dtype="float32"
    ) as writer:
        writer.add_ids(written + failed)
        rows = [features.ids.index(u) for u in written]
        writer.write(written, {p: a[rows] for p, a in features.arrays.items()})
        for utt_id in failed:
            writer.fail(utt_id, "unreadable audio (bad header)")
        writer.flush()
    source = CacheFeatures(path)
    with pytest.raises(
        CacheError, match=r"alpha\.h5 is incomplete: 35 of the manifest's 240 "
    ) as e:
        build_datasets([source], table, "basic4")
    assert f"(e.g. {never[0]}," in str(e.value) and "classify the 205 that have" in str(e.value)
    with caplog.at_level(logging.WARNING):
        (dataset,) = build_datasets([source], table, "basic4", allow_incomplete=True)
    source.reader.close()
    assert sorted(dataset.table["utt_id"]) == sorted(written)
    assert dataset.without_features == {str(path): 40}
    assert dataset.unused == {}
    text = caplog.text
    assert f"{path}: 40 utterance(s) of the manifest have no features and are left out" in text
    assert f"5 failed extraction ({failed[0]}: unreadable audio (bad header)" in text
    assert f"35 never extracted ({never[0]}, {never[1]}, {never[2]})" in text


def test_failed_rows_alone_do_not_make_a_cache_incomplete(alpha, tmp_path, caplog):
    table, features = alpha
    ids = list(table["utt_id"])
    path = tmp_path / "alpha.h5"
    with cache.CacheWriter(
        path, key=features.key, layers=features.layers, dim=features.dim, storage_dtype="float32"
    ) as writer:
        writer.add_ids(ids)
        rows = [features.ids.index(u) for u in ids[:-3]]
        writer.write(ids[:-3], {p: a[rows] for p, a in features.arrays.items()})
        for utt_id in ids[-3:]:
            writer.fail(utt_id, "audio too short")
        writer.flush()
    source = CacheFeatures(path)
    with caplog.at_level(logging.WARNING):
        (dataset,) = build_datasets([source], table, "basic4")
    source.reader.close()
    assert len(dataset.table) == len(ids) - 3 and "3 failed extraction" in caplog.text
