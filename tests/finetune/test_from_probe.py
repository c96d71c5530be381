"""Probe-informed fine-tuning against the probes ``ser probe`` stored for the same folds.

One ``ser probe`` run (logreg on every layer of the demo's tiny wav2vec2, 3
speaker folds of a synthetic corpus) is the reference: a head-only fine-tune
comes within 2 points of its probe; with ``--from-probe`` epoch 0 gives the
stored probe's own test predictions, the kept epoch is never below epoch 0 on
validation, a killed run resumes to the same results, and probes of other folds or
other features are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import corpora, manifest, synth
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune

pytestmark = pytest.mark.slow
FOLDS = 3


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> tuple[pd.DataFrame, Path, Path]:
    """(manifest, model folder, probe results folder) of one ``ser probe`` run (float16 cache)."""
    return probe_run(tmp_path_factory.mktemp("from-probe"))


@pytest.fixture(scope="module")
def probed32(tmp_path_factory) -> tuple[pd.DataFrame, Path, Path]:
    """As :func:`probed`, the cache storing float32 (``ser run``, extract.storage_dtype)."""
    return probe_run(tmp_path_factory.mktemp("from-probe-32"), storage_dtype="float32")


def probe_run(work: Path, storage_dtype: str | None = None) -> tuple[pd.DataFrame, Path, Path]:
    """Write the corpus and the tiny model, probe every layer with logreg."""
    from ssl_ser.pipelines.demo import build_model
    from ssl_ser.pipelines.experiment import experiment_from_dict
    from ssl_ser.pipelines.run import run_experiment

    # 6 voices x 4 emotions x 5 sentences = 120 utterances
    synth.write_corpus(work / "synth", synth.DEFAULT_VOICES, sentences=5, seed=2)
    pattern = synth.SPEAKER_PATTERN
    table = corpora.load("folder", work / "synth", name="synth", speaker_pattern=pattern)
    listing = manifest.write(table, work / "synth.csv")
    model = build_model(work / "model")
    if storage_dtype is None:  # as a user runs it
        args = [
            "probe", "--model", str(model), "--corpus", f"synth={listing}",
            "--classifiers", "logreg", "--folds", str(FOLDS), "--device", "cpu", "--workers", "0",
            "--cache-dir", str(work / "cache"), "--output", str(work / "probe"), "--no-progress",
        ]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        return manifest.read(listing), model, work / "probe" / "results"
    experiment = {
        "name": "probe32",
        "models": [str(model)],
        "corpora": {"synth": str(listing)},
        "classifiers": ["logreg"],
        "split": {"method": "speaker-kfold", "folds": FOLDS},
        "cache_dir": str(work / "cache"),
        "output": str(work / "out"),
        "report": False,
        "extract": {"workers": 0, "device": "cpu", "storage_dtype": storage_dtype},
        "classify": {"bootstrap": 0},
    }
    done = run_experiment(experiment_from_dict(experiment))
    return manifest.read(listing), model, done.plan.variants[0].results_dir


def settings(**fields) -> RunOptions:
    return RunOptions(
        split_options=SplitOptions(folds=fields.pop("folds", FOLDS)),
        device="cpu",
        workers=0,
        bootstrap=20,
        save_models=False,
        **fields,
    )


def probe_rows(probe: Path) -> pd.DataFrame:
    return pd.read_parquet(probe / "results.parquet")


def probe_predictions(probe: Path, layer: str) -> pd.DataFrame:
    stored = pd.read_parquet(probe / "predictions.parquet")
    return stored[stored["layer"].astype(str) == layer].set_index("utt_id").sort_index()


def test_a_head_only_run_reaches_the_probe_of_its_layer(probed, tmp_path):
    table, model, probe = probed
    layer = 2
    config = FinetuneConfig(
        model=str(model),
        freeze="base",
        head="linear",
        head_layer=layer,
        epochs=30,
        patience=None,
        batch_seconds=8.0,
    )
    run_finetune(table, config, settings(), tmp_path)
    tuned = pd.read_parquet(tmp_path / "results.parquet")
    probes = probe_rows(probe)
    probes = probes[probes["layer"] == str(layer)]
    assert set(tuned["fold_digest"]) == set(probes["fold_digest"])  # the same folds
    assert tuned["ua"].mean() >= probes["ua"].mean() - 0.02, (
        tuned[["fold", "ua"]],
        probes[["fold", "ua"]],
    )


@pytest.mark.parametrize(("fixture", "tolerance"), [("probed32", 1e-4), ("probed", 2e-3)])
def test_epoch_zero_of_a_probe_started_run_is_the_stored_probe(
    fixture, tolerance, request, tmp_path
):
    """The same labels; probabilities equal up to float32 sums taken in another order (float32
    cache: measured 1.5e-5), or to a float16 cache rounding ~0.1% of values the other way."""
    table, model, probe = request.getfixturevalue(fixture)
    listing = manifest.write(table, tmp_path / "synth.csv")
    args = [
        "finetune", "--model", str(model), "--manifest", str(listing),
        "--folds", str(FOLDS), "--device", "cpu", "--workers", "0", "--bootstrap", "20",
        "--from-probe", str(probe), "--head", "linear", "--epochs", "0",
        "--output", str(tmp_path / "out"), "--no-save-models",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    tuned = pd.read_parquet(tmp_path / "out" / "results.parquet")
    (layer,) = set(tuned["layer"])
    assert f"layer {layer} chosen on validation speakers" in result.output
    for row in tuned.itertuples():
        curve = json.loads(row.training_curve)
        assert [point["epoch"] for point in curve] == [0] and row.best_epoch == 0
        assert json.loads(row.params)["init"] == "probe"
    mine = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    mine = mine.set_index("utt_id").sort_index()
    theirs = probe_predictions(probe, layer)
    assert list(mine.index) == list(theirs.index)  # every test row of every fold, once
    assert (mine["predicted"] == theirs["predicted"]).all()
    columns = [c for c in theirs.columns if c.startswith("prob_")]
    np.testing.assert_allclose(mine[columns], theirs[columns], atol=tolerance)


def test_the_kept_epoch_is_never_below_epoch_zero_on_validation(probed, tmp_path, caplog):
    caplog.set_level("INFO")
    table, model, probe = probed
    # a head rate far too high: later epochs may well be worse than the probe
    config = FinetuneConfig(
        model=str(model), epochs=2, patience=None, head_learning_rate=3.0, batch_seconds=16.0
    )
    result = run_finetune(table, config, settings(from_probe=str(probe)), tmp_path)
    # the summary names the layer read and its UA once, not again as a "chosen layer"
    assert "layer chosen on training speakers" not in result.line, result.line
    tuned = pd.read_parquet(tmp_path / "results.parquet")
    predictions = pd.read_parquet(tmp_path / "predictions.parquet").set_index("utt_id")
    (layer,) = set(tuned["layer"])
    theirs = probe_predictions(probe, layer)
    for row in tuned.itertuples():
        curve = {point["epoch"]: point["val_ua"] for point in json.loads(row.training_curve)}
        assert sorted(curve) == [0, 1, 2]
        assert row.val_ua == max(curve.values()) == curve[row.best_epoch] >= curve[0]
        if row.best_epoch == 0:  # the probe kept: its own test predictions
            mine = predictions[predictions["cell_id"] == row.cell_id].sort_index()
            assert (mine["predicted"] == theirs.loc[mine.index, "predicted"]).all()
    assert (tuned["best_epoch"] == 0).any(), "the too-high rate should lose to the probe somewhere"
    # each fold's validation share is printed once, though the layer choice draws it too
    shares = [r.getMessage() for r in caplog.records if "validation on" in r.getMessage()]
    assert sorted(line.split(":")[0] for line in shares) == [f"fold {k}" for k in range(FOLDS)]


def test_probes_of_other_folds_are_refused(probed, tmp_path):
    table, model, probe = probed
    config = FinetuneConfig(model=str(model), epochs=1)
    with pytest.raises(ConfigError, match="the probes were run on other folds: fold 0"):
        run_finetune(table, config, settings(folds=2, from_probe=str(probe)), tmp_path)


def test_features_other_than_the_cached_ones_are_refused(probed, tmp_path):
    table, model, probe = probed
    # windows of 0.5 s: other pooled features than the cache's whole utterances
    config = FinetuneConfig(model=str(model), epochs=0, max_seconds=0.5, init="probe", head_layer=1)
    with pytest.raises(ConfigError, match="differs from the stored one by up to"):
        run_finetune(table, config, settings(from_probe=str(probe)), tmp_path)


def test_a_folder_without_probe_results_is_refused(probed, tmp_path):
    table, model, _ = probed
    config = FinetuneConfig(model=str(model), epochs=1)
    with pytest.raises(ConfigError, match=f"--from-probe {tmp_path}: holds no results.parquet"):
        run_finetune(table, config, settings(from_probe=str(tmp_path)), tmp_path / "out")


class KilledError(Exception):
    """Stands for a kill right after a checkpoint was committed."""


def test_a_probe_started_run_killed_after_epoch_one_resumes_to_the_same_results(
    probed, tmp_path, monkeypatch
):
    from ssl_ser.finetune import checkpoint

    table, model, probe = probed
    config = FinetuneConfig(model=str(model), epochs=3, patience=None, batch_seconds=16.0)
    run_finetune(table, config, settings(from_probe=str(probe)), tmp_path / "whole")
    save = checkpoint.save

    def save_then_die(folder, state, *args):
        save(folder, state, *args)
        if state.epoch == 1:  # epoch 0 (the probe) and epoch 1 are checkpointed
            raise KilledError

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KilledError):
        run_finetune(table, config, settings(from_probe=str(probe)), tmp_path / "killed")
    monkeypatch.setattr(checkpoint, "save", save)
    run_finetune(table, config, settings(from_probe=str(probe)), tmp_path / "killed")
    columns = ["cell_id", "fold", "ua", "val_ua", "best_epoch", "training_curve"]
    whole, killed = (
        pd.read_parquet(tmp_path / name / "results.parquet")[columns]
        .sort_values("cell_id")
        .reset_index(drop=True)
        for name in ("whole", "killed")
    )
    pd.testing.assert_frame_equal(killed, whole, check_exact=True)
    assert [json.loads(c)[0]["epoch"] for c in whole["training_curve"]] == [0] * FOLDS
    whole, killed = (
        pd.read_parquet(tmp_path / name / "predictions.parquet")
        .sort_values(["cell_id", "utt_id"])
        .reset_index(drop=True)
        for name in ("whole", "killed")
    )
    pd.testing.assert_frame_equal(killed, whole, check_exact=True)
