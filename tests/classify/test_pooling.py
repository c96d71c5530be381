"""Pooling per extractor in ``ser classify``: ``auto`` by default, explicit choices respected.

MFCC features are classified on mean and std side by side unless asked
otherwise; eGeMAPS (one stored pooling) falls back to it with a warning; the
results and cell ids hold the pooling actually used.
"""

import logging

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssl_ser import cache, manifest
from ssl_ser.classify import search
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.cli.main import cli
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest, write_cache

from .conftest import BASIC4

MFCC_DIM = 12
FOLDS = 4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An mfcc cache (mean and std) and an egemaps cache (88 functionals as 'mean')."""
    folder = tmp_path_factory.mktemp("pooling")
    table = synthetic_manifest(160, 8, BASIC4, corpus="alpha", seed=3)
    mfcc = synthetic_features(
        table, 1, MFCC_DIM, seed=3, key={"model": "mfcc", "condition": "clean"}
    )
    egemaps = synthetic_features(
        table, 1, 88, poolings=("mean",), seed=4, key={"model": "egemaps", "condition": "clean"}
    )
    return {
        "table": table,
        "mfcc_features": mfcc,
        "manifest": manifest.write(table, folder / "alpha.csv"),
        "mfcc": write_cache(folder / "mfcc.h5", mfcc),
        "egemaps": write_cache(folder / "egemaps.h5", egemaps),
    }


def classify(files, output, *caches, extra=()):
    args = [
        "classify",
        "--cache", ",".join(str(files[c]) for c in caches),
        "--manifest", str(files["manifest"]),
        "--classifiers", "logreg",
        "--folds", str(FOLDS),
        "--bootstrap", "0",
        "--threads", "1",
        "--output", str(output),
        "--no-progress",
        *extra,
    ]  # fmt: skip
    return CliRunner().invoke(cli, args)


def independent_logreg(x: np.ndarray, labels: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The registry's logreg, rebuilt from scikit-learn: scaler and classifier fit on train."""
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=0)
    )
    model.fit(x[~test], labels[~test])
    return model.predict(x[test])


def test_default_classification_of_an_mfcc_cache_uses_mean_and_std(files, tmp_path, monkeypatch):
    widths = []
    fit_single = search.fit_single

    def recorded(name, params, x, *args, **kwargs):
        widths.append(x.shape[1])
        return fit_single(name, params, x, *args, **kwargs)

    monkeypatch.setattr(search, "fit_single", recorded)
    result = classify(files, tmp_path, "mfcc")
    assert result.exit_code == 0, result.output
    assert widths == [2 * MFCC_DIM] * FOLDS

    results = pd.read_parquet(tmp_path / "results.parquet")
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert set(results["pooling"]) == {"mean+std"} and set(predictions["pooling"]) == {"mean+std"}
    with cache.open(files["mfcc"]) as reader:
        ids = np.array(reader.ids)
        x = np.hstack([reader.read("0", pooling="mean"), reader.read("0", pooling="std")])
        mean_only = np.asarray(reader.read("0", pooling="mean"))
    labels = files["table"].set_index("utt_id").loc[ids, "emotion"].to_numpy()
    differs = 0
    for row in results.itertuples():
        cell = predictions[predictions["cell_id"] == row.cell_id].set_index("utt_id")
        test = np.isin(ids, cell.index)
        assert row.n_train == len(ids) - test.sum()  # speaker k-fold: train on all the rest
        expected = independent_logreg(x, labels, test)
        assert list(cell.loc[ids[test], "predicted"]) == list(expected)
        assert row.ua == pytest.approx(balanced_accuracy_score(labels[test], expected))
        differs += (independent_logreg(mean_only, labels, test) != expected).sum()
    assert differs > 0, "mean alone would give other predictions"


def test_the_python_api_default_is_auto_too(files, tmp_path):
    assert SweepConfig().poolings == ("auto",)
    config = SweepConfig(split_options=SplitOptions(folds=FOLDS), bootstrap=0, threads=1)
    result = run_sweep([files["mfcc_features"]], files["table"], config, tmp_path)
    assert set(result.results["pooling"]) == {"mean+std"}


def test_mfcc_and_egemaps_mix_under_an_explicit_pooling(files, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ssl_ser.classify.sweep"):
        result = classify(files, tmp_path, "mfcc", "egemaps", extra=["--pooling", "mean+std"])
    assert result.exit_code == 0, result.output
    results = pd.read_parquet(tmp_path / "results.parquet")
    used = results.groupby("extractor")["pooling"].unique().map(list).to_dict()
    assert used == {"mfcc": ["mean+std"], "egemaps": ["mean"]}
    assert (
        "egemaps stores only 'mean' (its 88 eGeMAPS functionals): pooling 'mean+std' does not "
        "apply, using 'mean'" in caplog.text
    )


def test_a_pooling_that_no_cache_stores_is_refused(files, tmp_path):
    result = classify(files, tmp_path, "egemaps", extra=["--pooling", "mean+std"])
    assert result.exit_code == 1
    assert (
        "pooling 'mean+std' is not stored for any extractor of the sweep: egemaps stores "
        "'mean' (its 88 eGeMAPS functionals)" in result.output
    )
    assert not (tmp_path / "cells").exists()
    default = classify(files, tmp_path, "egemaps")
    assert default.exit_code == 0, default.output
    assert set(pd.read_parquet(tmp_path / "results.parquet")["pooling"]) == {"mean"}


def test_cell_ids_follow_the_resolved_pooling_not_the_word_auto(files, tmp_path):
    first = classify(files, tmp_path, "mfcc")
    assert f"{FOLDS} cell(s) run, 0 already done" in first.output
    same = classify(files, tmp_path, "mfcc", extra=["--pooling", "mean+std"])
    assert f"0 cell(s) run, {FOLDS} already done" in same.output
    other = classify(files, tmp_path, "mfcc", extra=["--pooling", "mean"])
    assert f"{FOLDS} cell(s) run, 0 already done" in other.output
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert results.groupby("pooling")["cell_id"].nunique().to_dict() == {
        "mean": FOLDS,
        "mean+std": FOLDS,
    }
