"""Probe bundles: saved safely, loaded without pickle, predicting what the fitted probe did."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from click.testing import CliRunner
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from ssl_ser import predict
from ssl_ser.classify import registry
from ssl_ser.classify.features import CacheFeatures
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.extract.runner import extract
from ssl_ser.predict import bundle, integrity
from ssl_ser.predict.export import export_probe

CLASSIFIERS = list(bundle.SAVABLE)


class Untrusted(TransformerMixin, BaseEstimator):
    """A step of a type no bundle holds."""

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x


@pytest.fixture(scope="module")
def cache(corpus_manifest, tiny_model, tmp_path_factory) -> CacheFeatures:
    folder = tmp_path_factory.mktemp("probe-cache")
    (summary,) = extract(
        corpus_manifest, ExtractorConfig(str(tiny_model)), folder, device="cpu", workers=0
    )
    return CacheFeatures(summary.path)


def reseal(folder):
    """Seal a folder's files as they are now, keeping its recorded meaning (a deliberate edit)."""
    record = integrity.read_record(folder)
    integrity.seal(folder, record.kind, record.outputs, record.audio)


def cached_rows(cache, manifest, layer="2"):
    """(features of layer `layer`, label codes) of the manifest's rows, from the cache."""
    position = [cache.ids.index(u) for u in manifest["utt_id"]]
    classes = ["angry", "happy", "sad", "neutral"]
    return cache.read(layer)[position], manifest["emotion"].map(classes.index).to_numpy()


@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_a_saved_probe_predicts_exactly_what_the_fitted_one_did(
    classifier, cache, corpus_manifest, tmp_path
):
    x, y = cached_rows(cache, corpus_manifest)
    params = {"n_estimators": 20} if classifier == "rf" else None  # 300 trees save slowly
    pipeline = registry.build_pipeline(classifier, params, seed=0, threads=1).fit(x, y)
    description = {"classifier": classifier, "classes": ["angry", "happy", "sad", "neutral"]}
    bundle.save(tmp_path, pipeline, {**description, "n_features": x.shape[1]})
    loaded = bundle.load_estimator(tmp_path, json.loads((tmp_path / "bundle.json").read_text()))
    np.testing.assert_array_equal(loaded.predict_proba(x), pipeline.predict_proba(x))


def test_live_audio_gives_the_cached_features_predictions(cache, corpus_manifest, tmp_path):
    exported = export_probe([cache], corpus_manifest, tmp_path / "bundle", classifier="logreg")
    predictor = predict.load(tmp_path / "bundle", "cpu")
    x, _ = cached_rows(cache, corpus_manifest, exported.layers[0])
    table = predictor.predict(list(corpus_manifest["path"]), batch_seconds=5.0)
    expected = predictor.classify(x)
    np.testing.assert_allclose(table.filter(like="prob_").to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-6)
    assert exported.choice["method"] == "chosen on held-out training speakers"
    assert set(exported.choice["validation_ua"]) == {str(i) for i in range(5)}


def test_a_bundle_holding_an_unexpected_type_is_refused(cache, corpus_manifest, tmp_path):
    exported = export_probe([cache], corpus_manifest, tmp_path, classifier="logreg", layers="1")
    fitted = sio.load(tmp_path / "probe.skops", trusted=list(bundle.TRUSTED_TYPES))
    sio.dump(Pipeline([("evil", Untrusted()), *fitted.steps]), tmp_path / "probe.skops")
    reseal(tmp_path)  # a hostile bundle with a record that matches its files
    with pytest.raises(ConfigError, match=r"Untrusted.*refused"):
        predict.load(exported.folder, "cpu")


def test_other_major_versions_warn_and_another_model_revision_is_refused(
    cache, corpus_manifest, tmp_path, caplog
):
    export_probe([cache], corpus_manifest, tmp_path, classifier="logreg", layers="1")
    path = tmp_path / "bundle.json"
    described = json.loads(path.read_text())
    described["versions"]["sklearn"] = "0.24.2"
    path.write_text(json.dumps(described))
    reseal(tmp_path)
    with caplog.at_level(logging.WARNING):
        predict.load(tmp_path, "cpu")
    assert "sklearn 0.24.2" in caplog.text
    described["cache_key"]["revision"] = "local:0000"
    path.write_text(json.dumps(described))
    reseal(tmp_path)
    with pytest.raises(ConfigError, match="local:0000"):
        predict.load(tmp_path, "cpu")


@pytest.mark.parametrize("classifier", ["svm-linear", "svm-rbf", "mlp-weighted"])
def test_classifiers_a_bundle_cannot_hold_are_refused_before_fitting(
    classifier, cache, corpus_manifest, tmp_path
):
    with pytest.raises(ConfigError, match=f"{classifier!r} cannot be saved"):
        export_probe([cache], corpus_manifest, tmp_path, classifier=classifier)
    assert not any(tmp_path.iterdir())


def test_classify_save_probe_and_export_from_results(cache, corpus_manifest, tmp_path):
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    common = ["--cache", str(cache.path), "--manifest", str(manifest)]
    result = CliRunner().invoke(
        cli,
        [
            "classify",
            *common,
            "--classifiers",
            "logreg",
            "--folds",
            "2",
            "--bootstrap",
            "20",
            "--no-progress",
            "--output",
            str(tmp_path / "results"),
            "--save-probe",
            str(tmp_path / "saved"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"probe saved to {tmp_path / 'saved'}: logreg on layer" in result.stdout
    exported = CliRunner().invoke(
        cli,
        [
            "export",
            *common,
            "--results",
            str(tmp_path / "results"),
            "--output",
            str(tmp_path / "b"),
        ],
    )
    assert exported.exit_code == 0, exported.output
    described = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert (described["classifier"], described["label_set"]) == ("logreg", "basic4")
    same = json.loads((tmp_path / "saved" / "bundle.json").read_text())
    assert described["layers"] == same["layers"]


def test_save_probe_picks_among_the_swept_layers_and_refuses_early(
    cache, corpus_manifest, tmp_path
):
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    common = ["classify", "--cache", str(cache.path), "--manifest", str(manifest), "--no-progress"]
    ranged = CliRunner().invoke(
        cli,
        [
            *common,
            "--layers",
            "1-3",
            "--folds",
            "2",
            "--bootstrap",
            "20",
            "--output",
            str(tmp_path / "r"),
            "--save-probe",
            str(tmp_path / "b"),
        ],
    )
    assert ranged.exit_code == 0, ranged.output
    described = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert described["layers"][0] in {"1", "2", "3"}
    assert set(described["layer_choice"]["validation_ua"]) == {"1", "2", "3"}
    refused = CliRunner().invoke(
        cli,
        [
            *common,
            "--classifiers",
            "svm-linear",
            "--output",
            str(tmp_path / "r2"),
            "--save-probe",
            str(tmp_path / "b2"),
        ],
    )
    assert refused.exit_code != 0 and "cannot be saved" in refused.output
    assert not (tmp_path / "r2" / "cells").exists()  # refused before any cell ran


def test_export_names_its_own_layer_flag_for_a_layer_the_cache_lacks(
    cache, corpus_manifest, tmp_path
):
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    args = ["--cache", str(cache.path), "--manifest", str(manifest), "--layer", "99"]
    refused = CliRunner().invoke(cli, ["export", *args, "--output", str(tmp_path / "b")])
    assert refused.exit_code != 0
    assert "unknown layer '99' in --layer (the cache holds" in refused.output


def test_export_fits_on_the_training_corpora_only(cache, corpus_manifest, tmp_path):
    exported = export_probe(
        [cache],
        corpus_manifest,
        tmp_path,
        classifier="logreg",
        layers="1",
        train_corpora=("synth",),
    )
    assert json.loads((tmp_path / "bundle.json").read_text())["n_train"] == len(corpus_manifest)
    with pytest.raises(ConfigError, match=r"training corpora \['other'\]"):
        export_probe([cache], corpus_manifest, tmp_path / "x", train_corpora=("other",))
    assert exported.layers == ("1",)


def test_bench_inference_times_a_probe_bundle_as_predict_runs_it(cache, corpus_manifest, tmp_path):
    from ssl_ser.predict import timing

    export_probe([cache], corpus_manifest, tmp_path, classifier="logreg", layers="2")
    pipeline = timing.load_pipeline(tmp_path, "cpu")
    wave = timing.synthetic_audio(1.0, 16000)
    segments = pipeline.backbone.preprocessor(wave)
    with pipeline.backbone.precision():
        states, frames = pipeline.backbone.forward_states(segments)
        got = pipeline.classify(states, frames)
    expected = predict.load(tmp_path, "cpu").predict([(wave, 16000)]).filter(like="prob_")
    np.testing.assert_allclose(got, expected.to_numpy(), atol=1e-6)
    assert pipeline.note == timing.PROBE_CLASSIFIER


def test_export_from_results_chooses_among_emotion_rows_only(tmp_path):
    from types import SimpleNamespace

    from ssl_ser.predict.export import settings_from_results

    key = {"model": "m", "condition": "clean"}
    common = {"labels": "basic4", "seed": 0, "layer": "1", "pooling": "mean"}
    rows = [
        {**common, "classifier": "logreg", "target": "emotion", "ua": 0.5},
        {**common, "classifier": "rf", "target": "speaker", "ua": 0.9},
        {**common, "classifier": "knn", "target": "control", "ua": 0.8},
    ]
    frame = pd.DataFrame(rows).assign(cache_keys=json.dumps([key]))
    frame.to_parquet(tmp_path / "results.parquet")
    chosen = settings_from_results(tmp_path, [SimpleNamespace(key=key)])
    assert chosen["classifier"] == "logreg"
    frame.drop(index=0).to_parquet(tmp_path / "results.parquet")
    with pytest.raises(ConfigError, match="no emotion results of a classifier a bundle can hold"):
        settings_from_results(tmp_path, [SimpleNamespace(key=key)])
