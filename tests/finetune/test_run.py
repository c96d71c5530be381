"""ser finetune end to end on a tiny model: folds, learning, results, saved models, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score

from ssl_ser.classify.splits import SplitOptions
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.extract.backbones import load_backbone
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.model import plain_norms
from ssl_ser.finetune.run import RunOptions, run_finetune
from ssl_ser.results import GROUP_COLUMNS
from ssl_ser.testing import write_garbage
from ssl_ser.testing.models import WAVEFORM_FAMILIES, save_waveform_model, save_whisper_model

FAST = {"epochs": 2, "learning_rate": 1e-3, "batch_seconds": 8.0, "patience": None}


def settings(**fields) -> RunOptions:
    """CPU, in-process audio loading, few bootstrap resamples."""
    options = fields.pop("split_options", SplitOptions(folds=2))
    return RunOptions(split_options=options, device="cpu", workers=0, bootstrap=50, **fields)


@pytest.mark.slow
def test_rows_follow_the_results_schema_and_models_are_saved(corpus_manifest, tiny_model, tmp_path):
    config = FinetuneConfig(model=str(tiny_model), weighted_layers=True, head="mlp", **FAST)
    result = run_finetune(corpus_manifest, config, settings(), tmp_path)
    rows = pd.read_parquet(tmp_path / "results.parquet")
    assert result.folds_run == 2 and len(rows) == 2
    assert set(GROUP_COLUMNS) <= set(rows.columns)
    assert set(rows["classifier"]) == {"finetune"} and set(rows["layer"]) == {"weighted"}
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    # speakers and genders are stored, so fine-tunes pair with probes (ser compare)
    who = corpus_manifest.set_index("utt_id").loc[predictions["utt_id"], ["speaker", "gender"]]
    assert (predictions[["speaker", "gender"]].to_numpy() == who.to_numpy()).all()
    for row in rows.itertuples():
        mine = predictions[predictions["cell_id"] == row.cell_id]
        expected = balanced_accuracy_score(mine["label"], mine["predicted"])
        assert row.ua == pytest.approx(expected)
        probabilities = mine.filter(like="prob_").to_numpy()
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)
        weights = json.loads(row.layer_weights)
        assert len(weights) == 5 and sum(weights) == pytest.approx(1.0, abs=1e-5)
        curve = json.loads(row.training_curve)
        assert [point["epoch"] for point in curve] == [1, 2] and row.epochs_run == 2
        assert 1 <= row.best_epoch <= 2
        params = json.loads(row.params)
        assert (params["head"], params["freeze"], params["adapter"]) == (
            "mlp",
            "feature-encoder",
            "none",
        )
        folder = tmp_path / "models" / row.cell_id
        assert (folder / "backbone" / "config.json").is_file()
        assert (folder / "head.safetensors").is_file()
        labels = json.loads((folder / "labels.json").read_text())
        assert labels["classes"] == ["angry", "happy", "sad", "neutral"]  # the label set's order
    assert not any((tmp_path / "checkpoints").glob("*/epoch-*"))
    again = run_finetune(corpus_manifest, config, settings(), tmp_path)
    assert (again.folds_run, again.folds_skipped) == (0, 2)


@pytest.mark.slow
def test_training_loss_falls_and_validation_beats_chance(corpus_manifest, tiny_model, tmp_path):
    config = FinetuneConfig(
        model=str(tiny_model),
        freeze="none",
        epochs=6,
        learning_rate=3e-3,
        batch_seconds=8.0,
        patience=None,
    )
    # a speaker-dependent split, whose own validation part shares the training speakers
    split = SplitOptions(ratios=(0.6, 0.2, 0.2))
    run_finetune(corpus_manifest, config, settings(split="random", split_options=split), tmp_path)
    (row,) = pd.read_parquet(tmp_path / "results.parquet").itertuples()
    curve = json.loads(row.training_curve)
    losses = [point["train_loss"] for point in curve]
    assert losses[-1] < 0.9 * losses[0]
    assert max(point["val_ua"] for point in curve) > 0.25 + 0.1


def test_unreadable_audio_is_skipped_and_listed(corpus_manifest, tiny_model, tmp_path):
    broken = corpus_manifest.iloc[:1].copy()
    broken["utt_id"] = "synth/broken"
    broken["path"] = str(write_garbage(tmp_path / "broken.wav"))
    table = pd.concat([corpus_manifest, broken], ignore_index=True)
    config = FinetuneConfig(model=str(tiny_model), **{**FAST, "epochs": 1})
    result = run_finetune(table, config, settings(save_models=False), tmp_path / "out")
    assert result.skipped_audio == 1
    listed = pd.read_csv(tmp_path / "out" / "finetune_skipped.csv")
    assert listed["utt_id"].tolist() == ["synth/broken"] and listed["reason"].str.len().gt(0).all()
    predictions = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert "synth/broken" not in set(predictions["utt_id"])
    assert len(predictions) == len(corpus_manifest)


@pytest.mark.slow
def test_a_class_missing_from_training_drops_its_test_rows(corpus_manifest, tiny_model, tmp_path):
    speakers = sorted(corpus_manifest["speaker"].unique())
    only_one = (corpus_manifest["emotion"] != "sad") | (corpus_manifest["speaker"] == speakers[0])
    config = FinetuneConfig(model=str(tiny_model), **{**FAST, "epochs": 1})
    run_finetune(
        corpus_manifest[only_one].reset_index(drop=True),
        config,
        settings(split="loso", save_models=False),
        tmp_path,
    )
    rows = pd.read_parquet(tmp_path / "results.parquet").set_index("fold")
    assert rows.loc[speakers[0], "n_dropped"] == 3  # its 3 sad rows: no sad in training
    assert (rows.drop(index=speakers[0])["n_dropped"] == 0).all()


@pytest.mark.slow
def test_test_fold_labels_never_reach_the_epoch_choice(corpus_manifest, tiny_model, tmp_path):
    config = FinetuneConfig(model=str(tiny_model), **{**FAST, "epochs": 3, "dropout": 0.0})
    run_finetune(corpus_manifest, config, settings(save_models=False), tmp_path / "a")
    predictions = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
    tested = set(predictions.loc[predictions["fold"] == "0", "utt_id"])
    rotate = {"angry": "happy", "happy": "sad", "sad": "neutral", "neutral": "angry"}
    relabelled = corpus_manifest.copy()
    chosen = relabelled["utt_id"].isin(tested)
    relabelled.loc[chosen, "emotion"] = relabelled.loc[chosen, "emotion"].map(rotate)
    run_finetune(relabelled, config, settings(save_models=False), tmp_path / "b")
    before, after = (
        pd.read_parquet(tmp_path / name / "results.parquet").set_index("fold").loc["0"]
        for name in ("a", "b")
    )
    assert before["fold_digest"] == after["fold_digest"]
    assert before["training_curve"] == after["training_curve"]
    assert before["best_epoch"] == after["best_epoch"]
    tables = [
        pd.read_parquet(tmp_path / name / "predictions.parquet")
        .query("fold == '0'")
        .sort_values("utt_id")
        for name in ("a", "b")
    ]
    # the test labels did change, and only the scoring saw them
    assert (tables[0]["label"].to_numpy() != tables[1]["label"].to_numpy()).all()
    probabilities = [table.filter(like="prob_").to_numpy() for table in tables]
    np.testing.assert_array_equal(*probabilities)


FAMILIES = [*WAVEFORM_FAMILIES, "whisper", "whisper-trim"]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_backbone_family_fine_tunes(family, corpus_manifest, tmp_path):
    if family.startswith("whisper"):
        model = save_whisper_model(tmp_path / "model")
    else:
        model = save_waveform_model(family, tmp_path / "model")
    config = FinetuneConfig(
        model=str(model),
        freeze="none",
        whisper_trim=family == "whisper-trim",
        **{**FAST, "epochs": 1},
    )
    before = load_file(str(model / "model.safetensors"))
    run_finetune(
        corpus_manifest, config, settings(split="speaker", split_options=SplitOptions()), tmp_path
    )
    (row,) = pd.read_parquet(tmp_path / "results.parquet").itertuples()
    assert np.isfinite(json.loads(row.training_curve)[0]["train_loss"])
    saved = tmp_path / "models" / row.cell_id / "backbone"
    after = load_file(str(saved / "model.safetensors"))
    if family.startswith("whisper"):  # the encoder alone is saved
        before = {k.removeprefix("encoder."): v for k, v in before.items() if "encoder." in k}
    assert set(after) == set(before)  # masked group norms saved under their own names
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed, "no backbone weight changed in training"
    reloaded = load_backbone(ExtractorConfig(str(saved), whisper_trim=config.whisper_trim), "cpu")
    with plain_norms(reloaded.model):
        state = reloaded.model.state_dict()
    for name, value in after.items():  # every trained weight loads back, none left at random
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)


def test_half_precision_off_cuda_is_refused_before_training(corpus_manifest, tiny_model, tmp_path):
    config = FinetuneConfig(model=str(tiny_model), dtype="bfloat16", **FAST)
    with pytest.raises(ConfigError, match="bfloat16.*--dtype float32"):
        run_finetune(corpus_manifest, config, settings(), tmp_path)
    assert not (tmp_path / "cells").exists()


def test_cli_trains_reports_progress_and_summarises(corpus_manifest, tiny_model, tmp_path):
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    arguments = [
        "finetune",
        "--model",
        str(tiny_model),
        "--manifest",
        str(manifest),
        "--folds",
        "2",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--batch-seconds",
        "8",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--bootstrap",
        "20",
        "--no-save-models",
        "--no-progress",
        "--output",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert "2 fold(s) fine-tuned, 0 already done, 0 utterance(s) skipped" in result.stdout
    assert "finetune clean->clean fold 1: epoch 1/1 train loss" in result.stderr
    again = CliRunner().invoke(cli, arguments)
    assert "0 fold(s) fine-tuned, 2 already done" in again.stdout
    bad = CliRunner().invoke(cli, [*arguments[:-2], "--freeze", "top", "--output", "x"])
    assert bad.exit_code != 0 and "--freeze 'top'" in bad.output
    assert "give --top-layers >= 1, got None" in bad.output


def test_class_weights_are_sklearns_balanced_weights_at_mean_one():
    from sklearn.utils.class_weight import compute_class_weight

    from ssl_ser.finetune.train import class_weights

    codes = np.array([0] * 30 + [1] * 10 + [3] * 5)
    weights = class_weights(codes, 4)
    balanced = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=codes)
    np.testing.assert_allclose(weights[[0, 1, 3]], balanced / balanced.mean())
    assert weights[2] == 0.0  # absent from the fitting rows: never a target


@pytest.mark.slow
def test_early_stopping_ends_after_patience_epochs_without_a_better_validation_ua(
    corpus_manifest, tiny_model, tmp_path
):
    # learning rates too small to change a prediction: validation UA never improves
    config = FinetuneConfig(
        model=str(tiny_model),
        epochs=6,
        patience=2,
        learning_rate=1e-12,
        head_learning_rate=1e-12,
        batch_seconds=8.0,
    )
    run_finetune(corpus_manifest, config, settings(save_models=False), tmp_path)
    rows = pd.read_parquet(tmp_path / "results.parquet")
    for row in rows.itertuples():
        curve = json.loads(row.training_curve)
        assert len({point["val_ua"] for point in curve}) == 1
        assert (row.epochs_run, row.best_epoch, len(curve)) == (3, 1, 3)


@pytest.mark.slow
def test_two_settings_share_a_folder_as_two_groups(corpus_manifest, tiny_model, tmp_path):
    for freeze in ("feature-encoder", "base"):
        config = FinetuneConfig(model=str(tiny_model), freeze=freeze, **{**FAST, "epochs": 1})
        run_finetune(corpus_manifest, config, settings(save_models=False), tmp_path)
    rows = pd.read_parquet(tmp_path / "results.parquet")
    assert len(rows) == 4 and not any((tmp_path / "cells" / "superseded").glob("*.json"))
    summary = pd.read_csv(tmp_path / "summary.csv")
    tuned = summary[summary["classifier"] == "finetune"].set_index("setting")
    base = "epochs=1, patience=None, learning_rate=0.001, batch_seconds=8.0"
    assert sorted(tuned.index) == sorted([base, f"freeze=base, {base}"])
    assert (tuned["n_folds"] == 2).all() and set(tuned["layer"]) == {"weighted"}  # the default


def test_a_failure_in_one_condition_leaves_the_other_conditions_rows():
    from ssl_ser.finetune.data import Audio, run_table

    table = pd.DataFrame(
        {
            "utt_id": ["a/1", "a/2", "a/3", "a/4"],
            "corpus": "a",
            "speaker": ["s1", "s1", "s2", "s2"],
            "gender": "",
            "split": "",
            "emotion": ["angry", "happy", "angry", "happy"],
        }
    )
    audio = Audio(failed=[("a/2", "telephone", "AudioError: no ready copy")])
    rows = run_table(table, "basic4", ("clean", "telephone"), audio).table
    assert list(rows.loc[rows["condition"] == "clean", "utt_id"]) == ["a/1", "a/2", "a/3", "a/4"]
    assert list(rows.loc[rows["condition"] == "telephone", "utt_id"]) == ["a/1", "a/3", "a/4"]


def test_zero_turns_patience_and_clipping_off(tiny_model):
    config = FinetuneConfig(model=str(tiny_model), patience=0, clip=0)
    assert (config.patience, config.clip) == (None, None)


def test_a_gpu_named_by_index_under_several_processes_is_refused():
    from ssl_ser.finetune.distributed import World

    with pytest.raises(ConfigError, match="cuda:1 under 2 processes"):
        World(rank=0, size=2).device("cuda:1")
    assert World().device("cuda:1") == "cuda:1"


def test_out_of_memory_in_backward_names_what_to_lower(corpus_manifest, tiny_model, monkeypatch):
    from ssl_ser.finetune import train
    from ssl_ser.finetune.data import load_audio
    from ssl_ser.finetune.model import build_model

    config = FinetuneConfig(model=str(tiny_model), **FAST)
    model, backbone = build_model(config, 4, "cpu", 0)
    audio = load_audio(
        corpus_manifest.head(4), backbone.preprocessor, ["clean"], "derived", 0, False
    )
    trainer = train.Trainer(model, config, audio, 0, train.World())
    keys = [(u, "clean") for u in corpus_manifest["utt_id"].head(4)]
    rows = train.FoldRows(keys, np.zeros(4, dtype=np.int64), keys, np.zeros(4, dtype=np.int64), 4)

    class Exhausted:
        def backward(self):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer.scaler, "scale", lambda loss: Exhausted())
    weight = torch.ones(4)
    with pytest.raises(ConfigError, match="--batch-seconds.*--accumulation"):
        train._backward(trainer, [0, 1], rows, weight, 2.0, train.TrainState(1), 0)


def test_reruns_clear_stale_checkpoints_and_skip_lists(corpus_manifest, tiny_model, tmp_path):
    broken = corpus_manifest.iloc[:1].copy()
    broken["utt_id"] = "synth/broken"
    broken["path"] = str(write_garbage(tmp_path / "broken.wav"))
    config = FinetuneConfig(model=str(tiny_model), **{**FAST, "epochs": 1})
    out = tmp_path / "out"
    with_broken = pd.concat([corpus_manifest, broken], ignore_index=True)
    run_finetune(with_broken, config, settings(save_models=False), out)
    assert (out / "finetune_skipped.csv").is_file()
    cell = pd.read_parquet(out / "results.parquet")["cell_id"].iloc[0]
    stale = out / "checkpoints" / cell / "epoch-001"
    stale.mkdir(parents=True)
    result = run_finetune(corpus_manifest, config, settings(save_models=False), out)
    assert not (out / "finetune_skipped.csv").exists() and not stale.exists()
    assert result.folds_skipped + result.folds_run == 2
