import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ssl_ser import __version__
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.errors import (
    CacheKeyMismatchError,
    ConfigError,
    ManifestError,
    UnknownChoiceError,
)

from .conftest import BASIC4, SMALL_LINEAR, SMALL_MLP, corpus, relabel

FAST = {
    "bootstrap": 100,
    "split_options": SplitOptions(folds=3),
    "threads": 1,
    "params": {"mlp": SMALL_MLP, "linear": SMALL_LINEAR},
}


def sweep(sources, manifest, output, **options):
    return run_sweep(sources, manifest, SweepConfig(**{**FAST, **options}), output)


def test_results_match_sklearn_on_stored_predictions(alpha, tmp_path):
    table, features = alpha
    result = sweep(
        [features], table, tmp_path, classifiers=("logreg", "mlp"), poolings=("mean", "mean+std")
    )
    results, predictions = result.results, pd.read_parquet(tmp_path / "predictions.parquet")
    assert len(results) == 4 * 2 * 2 * 3  # layers x poolings x classifiers x folds
    assert not results.duplicated(["layer", "pooling", "classifier", "fold"]).any()
    assert {"extractor", "cache_keys", "seed", "params", "ua_low", "confusion"} <= set(results)
    assert json.loads(results["cache_keys"].iloc[0])[0]["model"] == "tiny-model"
    speakers = table.set_index("utt_id")["speaker"]
    for row in results.itertuples():
        cell = predictions[predictions["cell_id"] == row.cell_id]
        assert row.ua == pytest.approx(balanced_accuracy_score(cell["label"], cell["predicted"]))
        assert row.wa == pytest.approx(accuracy_score(cell["label"], cell["predicted"]))
        assert row.macro_f1 == pytest.approx(
            f1_score(cell["label"], cell["predicted"], average="macro")
        )
        assert row.ua_low <= row.ua <= row.ua_high
        probabilities = cell[[f"prob_{c}" for c in BASIC4]].to_numpy()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
        trained_on = set(table["speaker"]) - set(speakers[cell["utt_id"]])
        assert not trained_on & set(speakers[cell["utt_id"]])
    assert set(predictions.groupby(["layer", "pooling", "classifier"])["utt_id"].nunique()) == {240}
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"ua_mean", "ua_std", "ua_pooled", "ua_low", "ua_high"} <= set(summary)
    assert "logreg: best layer 2" in result.line or "logreg: best layer 3" in result.line
    assert (tmp_path / "results.csv").exists()


def test_rerun_skips_finished_cells_and_force_redoes_them(alpha, tmp_path):
    table, features = alpha
    first = sweep([features], table, tmp_path, classifiers=("logreg",), layers=("1", "2"))
    assert (first.cells_run, first.cells_skipped) == (6, 0)
    again = sweep([features], table, tmp_path, classifiers=("logreg",), layers=("1", "2"))
    assert (again.cells_run, again.cells_skipped) == (0, 6)
    pd.testing.assert_frame_equal(first.results, again.results)
    killed = sorted((tmp_path / "cells").glob("*.json"))[:2]  # as if the run died before these
    for path in killed:
        path.unlink()
    resumed = sweep([features], table, tmp_path, classifiers=("logreg",), layers=("1", "2"))
    assert (resumed.cells_run, resumed.cells_skipped) == (2, 4)
    assert len(resumed.results) == 6
    forced = sweep(
        [features], table, tmp_path, classifiers=("logreg",), layers=("1", "2"), force=True
    )
    assert (forced.cells_run, forced.cells_skipped) == (6, 0)


@pytest.mark.slow
def test_batched_probe_cells_equal_per_layer_cells(alpha, tmp_path):
    table, features = alpha
    batched = sweep([features], table, tmp_path / "b", classifiers=("mlp", "linear"), batched=True)
    single = sweep([features], table, tmp_path / "s", classifiers=("mlp", "linear"), batched=False)
    keys = ["classifier", "layer", "fold"]
    merged = batched.results.merge(single.results, on=keys, suffixes=("_b", "_s"))
    assert len(merged) == 2 * 4 * 3
    assert (merged["ua_b"] - merged["ua_s"]).abs().max() <= 0.01
    assert (merged["params_b"] == merged["params_s"]).mean() > 0.9  # same best epochs


@pytest.mark.slow
def test_search_never_sees_the_test_fold(alpha, tmp_path):
    table, features = alpha
    options = {"classifiers": ("logreg", "mlp"), "layers": ("1", "2"), "search": True}
    first = sweep([features], table, tmp_path / "a", **options)
    predictions = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
    fold0 = set(predictions.loc[predictions["fold"] == "0", "utt_id"])
    perturbed = table.copy()
    rows = perturbed["utt_id"].isin(fold0)
    perturbed.loc[rows, "emotion"] = np.roll(perturbed.loc[rows, "emotion"].to_numpy(), 7)
    second = sweep([features], perturbed, tmp_path / "b", **options)
    keys = ["classifier", "layer", "fold"]
    merged = first.results.merge(second.results, on=keys, suffixes=("_a", "_b"))
    in_fold0 = merged[merged["fold"] == "0"]
    assert len(in_fold0) == 4
    assert (in_fold0["params_a"] == in_fold0["params_b"]).all()
    assert (in_fold0["val_ua_a"] == in_fold0["val_ua_b"]).all()
    assert (in_fold0["ua_a"] != in_fold0["ua_b"]).any()  # the perturbation did reach the test
    chosen = {
        json.loads(p).get("C") for p in first.results.query("classifier == 'logreg'")["params"]
    }
    assert chosen <= {0.01, 0.1, 1.0, 10.0}


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results(alpha, tmp_path):
    table, features = alpha
    options = {"classifiers": ("logreg", "mlp"), "layers": ("0-2",)}
    serial = sweep([features], table, tmp_path / "1", jobs=1, **options).results
    parallel = sweep([features], table, tmp_path / "2", jobs=2, **options).results
    keys = ["classifier", "layer", "fold"]
    pd.testing.assert_series_equal(
        serial.sort_values(keys)["ua"].reset_index(drop=True),
        parallel.sort_values(keys)["ua"].reset_index(drop=True),
    )
    assert not list(tmp_path.glob("2/.features-*"))  # shared memory maps cleaned up


def test_pooled_corpora_get_rows_per_corpus(alpha_beta, tmp_path):
    table, sources = alpha_beta
    result = sweep(sources, table, tmp_path, classifiers=("logreg",), layers=("2",), labels="all")
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert set(result.results["test_corpus"]) == {"alpha+beta", "alpha", "beta"}
    for row in result.results.query("test_corpus == 'beta'").itertuples():
        cell = predictions[
            (predictions["cell_id"] == row.cell_id) & (predictions["corpus"] == "beta")
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert row.ua == pytest.approx(
                balanced_accuracy_score(cell["label"], cell["predicted"])
            )


def test_pooled_folds_keep_the_pool_label_whatever_their_test_speakers(alpha_beta, tmp_path):
    table, sources = alpha_beta
    result = sweep(sources, table, tmp_path, classifiers=("logreg",), layers=("2",), split="loso")
    speakers = table.set_index("speaker")["corpus"].to_dict()
    for fold, rows in result.results.groupby("fold"):
        labels = sorted(rows["test_corpus"])
        assert labels == sorted(["alpha+beta", speakers[fold.split("loso-", 1)[-1]]]), fold
    assert set(result.results["train_corpus"]) == {"alpha+beta"}


def test_cross_corpus_drops_classes_unseen_in_training(alpha_beta, tmp_path, caplog):
    table, sources = alpha_beta
    with caplog.at_level(logging.WARNING):
        result = sweep(
            sources,
            table,
            tmp_path,
            classifiers=("logreg",),
            layers=("2",),
            labels="all",
            split="cross-corpus",
            split_options=SplitOptions(folds=3, train_corpora=("alpha",), test_corpora=("beta",)),
        )
    (row,) = result.results.itertuples()
    assert (row.train_corpus, row.test_corpus) == ("alpha", "beta")
    n_fear = int((table["emotion"] == "fear").sum())
    assert row.n_dropped == n_fear and row.n_test == 200 - n_fear
    assert "['fear'] absent from training" in caplog.text


def test_leave_one_corpus_out_and_few_shot(alpha_beta, tmp_path):
    table, sources = alpha_beta
    loco = sweep(
        sources,
        table,
        tmp_path / "loco",
        classifiers=("logreg",),
        layers=("2",),
        split="cross-corpus",
    )
    assert sorted(loco.results["fold"]) == ["alpha->beta", "beta->alpha"]
    few = sweep(
        sources,
        table,
        tmp_path / "few",
        classifiers=("logreg",),
        layers=("2",),
        split="few-shot",
        split_options=SplitOptions(folds=3, test_corpora=("beta",), shots=8),
    )
    assert len(few.results) == 3 and set(few.results["test_corpus"]) == {"beta"}
    assert (few.results["n_train"] == 240 + 8).all()


def test_cross_condition(alpha, tmp_path):
    table, features = alpha
    telephone = relabel(features, condition="telephone")
    telephone.arrays = {p: a + 0.5 for p, a in features.arrays.items()}
    both = sweep(
        [features, telephone], table, tmp_path / "m", classifiers=("logreg",), layers=("2",)
    )
    pairs = set(zip(both.results["train_condition"], both.results["test_condition"], strict=True))
    assert pairs == {("clean", "clean"), ("telephone", "telephone")}
    cross = sweep(
        [features, telephone],
        table,
        tmp_path / "x",
        classifiers=("logreg",),
        layers=("2",),
        train_condition="clean",
        test_condition="telephone",
    )
    assert set(cross.results["test_condition"]) == {"telephone"}
    assert len(cross.results) == 3
    with pytest.raises(UnknownChoiceError, match="unknown condition 'noisy'.*clean, telephone"):
        sweep([features, telephone], table, tmp_path / "e", train_condition="noisy")


def test_combined_layers_and_weighted_head(alpha, tmp_path):
    table, features = alpha
    combined = sweep([features], table, tmp_path / "c", classifiers=("logreg",), combine="mean")
    assert set(combined.results["layer"]) == {"0-3:mean"}
    weighted = sweep(
        [features],
        table,
        tmp_path / "w",
        classifiers=("mlp-weighted",),
        params={"mlp-weighted": SMALL_MLP},
    )
    assert set(weighted.results["layer"]) == {"weighted"}
    weights = json.loads(weighted.results["params"].iloc[0])["layer_weights"]
    assert sum(weights.values()) == pytest.approx(1, abs=1e-3)


def test_selected_layer_uses_inner_validation(alpha, tmp_path):
    table, features = alpha
    result = sweep([features], table, tmp_path, classifiers=("mlp",))
    selected = result.summary[result.summary["layer"] == "selected"]
    assert len(selected) == 1
    chosen = json.loads(selected["chosen_layers"].iloc[0])
    for fold, layer in chosen.items():
        rows = result.results[result.results["fold"] == fold]
        assert rows.loc[rows["val_ua"].idxmax(), "layer"] == layer
    assert "layer chosen on training speakers" in result.line


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"labels": "basic5"}, UnknownChoiceError, "unknown label set 'basic5'"),
        ({"classifiers": ("lda",)}, UnknownChoiceError, "unknown classifier 'lda'.*logreg"),
        ({"layers": ("7",)}, UnknownChoiceError, "unknown layer '7'"),
        ({"split_options": SplitOptions(folds=9)}, ConfigError, "9 folds need at least 9 speakers"),
        ({"split": "preset"}, ConfigError, "preset split needs train and test rows"),
    ],
)
def test_bad_options_are_named(alpha, tmp_path, options, error, message):
    table, features = alpha
    with pytest.raises(error, match=message):
        sweep([features], table, tmp_path, **options)


def test_bad_data_is_named(alpha, tmp_path):
    table, features = alpha
    with pytest.raises(CacheKeyMismatchError, match="holds model 'tiny-model', but model 'wavlm'"):
        run_sweep([features], table, SweepConfig(), tmp_path, model="wavlm")
    with pytest.raises(
        CacheKeyMismatchError, match="holds condition 'clean', but condition 'telephone'"
    ):
        run_sweep([features], table, SweepConfig(), tmp_path, condition="telephone")
    # a manifest that is a subset of the cache is used (tests/classify/test_dataset.py);
    # one that lists none of the cached ids is the wrong manifest
    elsewhere = table.assign(utt_id="other/" + table["utt_id"])
    with pytest.raises(ManifestError, match="none of the 240 feature ids .* is in the manifest"):
        sweep([features], elsewhere, tmp_path)
    only_sad = table.assign(emotion=np.where(table["emotion"] == "sad", "sad", "fear"))
    with pytest.raises(ConfigError, match=r"label set 'basic4' .* keeps 1 class\(es\) \['sad'\]"):
        sweep([features], only_sad, tmp_path)
    other_table, other = corpus("gamma", seed=3)
    other.key = {**other.key, "model": "other-model", "config_digest": "zzz"}
    both = sweep(
        [features, other],
        pd.concat([table, other_table]),
        tmp_path / "two",
        layers=("2",),
        split_options=SplitOptions(folds=2),
    )
    assert set(both.results["extractor"]) == {"tiny-model", "other-model"}


def test_sweep_reads_each_layer_once_whatever_the_number_of_cells(alpha, tmp_path, monkeypatch):
    table, features = alpha
    reads = []
    original = features.read

    def counted(layer, pooling="mean"):
        reads.append((layer, pooling))
        return original(layer, pooling)

    monkeypatch.setattr(features, "read", counted)
    result = sweep(
        [features],
        table,
        tmp_path,
        classifiers=("logreg", "knn"),
        layers=("1", "2"),
        poolings=("mean", "std"),
    )
    assert result.cells_run == 2 * 2 * 2 * 3  # layers x poolings x classifiers x folds
    assert sorted(reads) == [("1", "mean"), ("1", "std"), ("2", "mean"), ("2", "std")]


def test_selected_layer_breaks_validation_ties_by_depth_not_storage_order(alpha, tmp_path):
    from ssl_ser.classify.results import select_layers
    from ssl_ser.results import SELECTED_LAYER

    table, features = alpha
    results = sweep([features], table, tmp_path, classifiers=("logreg",)).results
    results["val_ua"] = 0.5  # every layer ties on the training speakers' validation
    choices = set()
    for seed in range(4):
        shuffled = results.sample(frac=1, random_state=seed)
        (row,) = select_layers(shuffled).itertuples()
        assert row.layer == SELECTED_LAYER
        choices.add(row.chosen_layers)
    lowest = str(min(results["layer"].astype(int)))
    assert choices == {json.dumps(dict.fromkeys(sorted(set(results["fold"])), lowest))}


def test_xgb_copes_with_a_class_absent_from_training_like_the_others(alpha_beta, tmp_path):
    table, sources = alpha_beta
    result = sweep(
        sources,
        table,
        tmp_path,
        classifiers=("logreg", "xgb"),
        layers=("2",),
        labels="all",
        split="cross-corpus",
        split_options=SplitOptions(folds=3, train_corpora=("alpha",), test_corpora=("beta",)),
        params={"xgb": {"n_estimators": 20, "max_depth": 3}},
    )
    rows = result.results.set_index("classifier")
    assert rows.loc["xgb", "n_test"] == rows.loc["logreg", "n_test"]
    n_classes = table.loc[table["corpus"] == "alpha", "emotion"].nunique()
    assert rows.loc["xgb", "ua"] > 1 / n_classes  # above chance, like logreg (0.34)
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    xgb = predictions[predictions["classifier"] == "xgb"]
    assert "fear" not in set(xgb["predicted"]) and xgb["prob_fear"].isna().all()  # as logreg


def test_plain_xgb_computes_what_a_bare_xgboost_classifier_does():
    from xgboost import XGBClassifier

    from ssl_ser.classify.registry import build_pipeline

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6))
    y = (x[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int) + (x[:, 1] > 0.8)
    ours = build_pipeline("xgb", {"n_estimators": 15}, seed=3).fit(x, y)
    bare = XGBClassifier(
        tree_method="hist",
        random_state=3,
        n_jobs=1,
        n_estimators=15,
        learning_rate=0.1,
        max_depth=6,
        subsample=0.8,
    ).fit(ours[:-1].transform(x), y)
    np.testing.assert_array_equal(ours.predict_proba(x), bare.predict_proba(ours[:-1].transform(x)))
    shifted = np.array(["angry", "happy", "sad"])[y]  # any labels, as for scikit-learn
    assert set(build_pipeline("xgb", {"n_estimators": 5}).fit(x, shifted).predict(x)) <= set(
        shifted
    )


@pytest.mark.slow
def test_default_threads_make_cells_independent_of_the_job_count(alpha, tmp_path):
    table, features = alpha
    options = {"classifiers": ("logreg", "linear"), "layers": ("0-1",), "threads": None}
    serial = sweep([features], table, tmp_path / "1", jobs=1, **options)
    parallel = sweep([features], table, tmp_path / "2", jobs=2, **options)
    assert set(serial.results["threads"]) == {1}
    assert set(serial.results["toolkit_version"]) == {__version__}  # recorded, not in the id
    columns = ["cell_id", "ua", "wa", "macro_f1"]
    pd.testing.assert_frame_equal(
        serial.results.sort_values("cell_id")[columns].reset_index(drop=True),
        parallel.results.sort_values("cell_id")[columns].reset_index(drop=True),
    )
    # another thread count computes other cells: a resumed folder never mixes them
    again = sweep([features], table, tmp_path / "1", jobs=1, **{**options, "threads": 2})
    assert again.cells_skipped == 0 and again.cells_run == serial.cells_run


@pytest.mark.parametrize(
    "second",
    [
        {"threads": 2},
        {"split_options": SplitOptions(folds=2)},
        {"split_options": SplitOptions(folds=3, seed=1)},
    ],
    ids=["threads", "folds", "seed"],
)
def test_a_rerun_with_other_options_never_counts_a_fold_twice(alpha, tmp_path, second):
    table, features = alpha
    options = {"classifiers": ("logreg",), "layers": ("1",), "bootstrap": 0}
    sweep([features], table, tmp_path, **options)
    rerun = sweep([features], table, tmp_path, **{**options, **second})
    fresh = sweep([features], table, tmp_path / "fresh", **{**options, **second})
    summary = rerun.summary[rerun.summary["layer"].astype(str) == "1"]
    assert len(summary) == (2 if second.get("split_options", SplitOptions()).seed else 1)
    if second.get(
        "split_options", SplitOptions()
    ).seed:  # another seed is another setting: both are kept, apart
        assert sorted(summary["seed"]) == [0, 1] and set(summary["n_folds"]) == {3}
        return
    expected = fresh.summary[fresh.summary["layer"].astype(str) == "1"]
    assert summary[["n_folds", "ua_mean", "ua_std"]].values.tolist() == (
        expected[["n_folds", "ua_mean", "ua_std"]].values.tolist()
    )
    assert len(rerun.results) == len(fresh.results)
    assert len(list((tmp_path / "cells" / "superseded").glob("*.json"))) == 3


def test_search_skips_candidates_too_big_for_the_inner_split(caplog):
    from ssl_ser.classify.search import fit_single

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 4)) + y[:, None]
    groups = np.tile(np.arange(6), 10)
    with caplog.at_level(logging.WARNING):
        model, chosen, val_ua = fit_single("knn", {}, x, y, groups, search=True, seed=0)
    assert chosen["n_neighbors"] in (5, 15) and val_ua > 0.5  # 45 > the inner split's rows
    assert "{'n_neighbors': 45} skipped on the inner split" in caplog.text
    assert set(model.predict(x)) <= {0, 1, 2}
