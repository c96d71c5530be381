"""ser predict with a fine-tuned model folder: the run's own predictions, error rows, batching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from safetensors import safe_open

from ssl_ser import predict
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune
from ssl_ser.testing import write_garbage, write_wav

SETTINGS = RunOptions(
    split="speaker", split_options=SplitOptions(), device="cpu", workers=0, bootstrap=20
)


def trained(manifest, model, output, **fields):
    """Fine-tune one fold; (model folder, its test predictions indexed by utt_id)."""
    config = FinetuneConfig(
        model=str(model),
        epochs=2,
        learning_rate=1e-3,
        batch_seconds=8.0,
        patience=None,
        **fields,
    )
    run_finetune(manifest, config, SETTINGS, output)
    predictions = pd.read_parquet(output / "predictions.parquet").set_index("utt_id")
    return output / "models" / predictions["cell_id"].iloc[0], predictions


@pytest.fixture(scope="module")
def weighted_run(corpus_manifest, tiny_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("ft-predict")
    return trained(corpus_manifest, tiny_model, output, weighted_layers=True, head="mlp")


@pytest.mark.parametrize("batch_seconds", [0.5, 60.0])
def test_a_saved_model_reproduces_its_runs_test_predictions(
    batch_seconds, weighted_run, corpus_manifest
):
    folder, expected = weighted_run
    paths = corpus_manifest.set_index("utt_id").loc[expected.index, "path"]
    table = predict.load(folder, "cpu").predict(list(paths), batch_seconds=batch_seconds)
    assert table["error"].isna().all()
    got = table.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(got, expected.filter(like="prob_").to_numpy(), atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)
    assert list(table["predicted"]) == list(expected["predicted"])


def test_a_lora_model_reproduces_its_runs_test_predictions(corpus_manifest, tiny_model, tmp_path):
    folder, expected = trained(corpus_manifest, tiny_model, tmp_path, adapter="lora", lora_rank=2)
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "backbone").exists()
    paths = corpus_manifest.set_index("utt_id").loc[expected.index, "path"]
    table = predict.load(folder, "cpu").predict(list(paths))
    got = table.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(got, expected.filter(like="prob_").to_numpy(), atol=1e-5)


def test_a_model_cut_above_its_layer_reproduces_its_runs_test_predictions(
    corpus_manifest, tiny_model, tmp_path
):
    """Saved with 2 of 4 layers: it loads cut the same way, with its input standardisation."""
    folder, expected = trained(corpus_manifest, tiny_model, tmp_path, head_layer=2)
    with safe_open(str(folder / "backbone" / "model.safetensors"), "pt") as saved:
        names = saved.keys()
    layers = {key.split(".")[2] for key in names if key.startswith("encoder.layers.")}
    with safe_open(str(folder / "head.safetensors"), "pt") as head:
        scale = head.get_tensor("scaler.scale")
    assert layers == {"0", "1"} and scale.shape == (1, 1, 64) and (scale != 1).all()
    table = predict.load(folder, "cpu").predict(
        list(corpus_manifest.set_index("utt_id").loc[expected.index, "path"])
    )
    got = table.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(got, expected.filter(like="prob_").to_numpy(), atol=1e-5)


def test_bad_files_get_error_rows_and_the_rest_are_labelled(weighted_run, tmp_path):
    folder, _ = weighted_run
    inputs = tmp_path / "inputs"
    write_wav(inputs / "a" / "good.wav", seconds=1.0, sample_rate=16000)
    write_wav(inputs / "call_8k.wav", seconds=1.5, sample_rate=8000)
    write_garbage(inputs / "broken.wav")
    write_wav(inputs / "tiny.wav", seconds=0.001, sample_rate=16000)
    runner = CliRunner()
    arguments = ["predict", str(folder), str(inputs), str(tmp_path / "missing.wav")]
    out = tmp_path / "preds.csv"
    result = runner.invoke(cli, [*arguments, "--device", "cpu", "--output", str(out)])
    assert result.exit_code == 1
    assert "2 file(s) labelled, 3 failed" in result.stderr
    table = pd.read_csv(out).set_index("path")
    errors = table["error"].dropna()
    expected = {"broken.wav", "missing.wav", "tiny.wav"}
    assert {p.rsplit("/", 1)[-1] for p in errors.index} == expected
    assert "too short" in errors[str(inputs / "tiny.wav")]
    assert "not found" in errors[str(tmp_path / "missing.wav")]
    good = table[table["error"].isna()]
    assert str(inputs / "call_8k.wav") in good.index
    assert good["duration"].loc[str(inputs / "call_8k.wav")] == pytest.approx(1.5, abs=0.01)
    np.testing.assert_allclose(good.filter(like="prob_").sum(axis=1), 1.0, atol=1e-6)


def test_a_manifest_is_an_input(weighted_run, corpus_manifest, tmp_path):
    folder, _ = weighted_run
    manifest = tmp_path / "m.csv"
    corpus_manifest.head(5).to_csv(manifest, index=False)
    table = predict.load(folder, "cpu").predict(manifest)
    assert list(table["utt_id"]) == list(corpus_manifest["utt_id"].head(5))
    assert table["error"].isna().all()


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a saved model"):
        predict.load(tmp_path)


def test_windows_cover_the_file_and_the_last_one_ends_at_its_end():
    from ssl_ser.predict.predictor import windows

    assert windows(100, 10, 4.0, 3.0) == [(0, 40), (30, 70), (60, 100)]
    assert windows(100, 10, 4.0, 4.0) == [(0, 40), (40, 80), (60, 100)]
    assert windows(30, 10, 4.0, 1.0) == [(0, 30)]


def test_windowed_rows_and_the_file_row_is_their_mean(weighted_run, tmp_path):
    folder, _ = weighted_run
    path = write_wav(tmp_path / "long.wav", seconds=3.0, sample_rate=16000, frequency=180.0)
    predictor = predict.load(folder, "cpu")
    table = predictor.predict([path], window=1.0, hop=1.0)
    assert list(table["window"]) == ["0", "1", "2", "all"]
    probabilities = table.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(probabilities[3], probabilities[:3].mean(axis=0), atol=1e-12)
    assert table["end"].iloc[3] == pytest.approx(3.0)
    import soundfile

    wave, rate = soundfile.read(path, dtype="float32")
    alone = predictor.predict([(wave[16000:32000], rate)]).filter(like="prob_").to_numpy()
    np.testing.assert_allclose(alone[0], probabilities[1], atol=1e-6)


def test_waveforms_at_any_rate_predict_as_their_files_do(weighted_run, tmp_path):
    folder, _ = weighted_run
    path = write_wav(tmp_path / "call.wav", seconds=1.5, sample_rate=8000, frequency=150.0)
    import soundfile

    wave, rate = soundfile.read(path, dtype="float32")
    predictor = predict.load(folder, "cpu")
    from_file = predictor.predict([path]).filter(like="prob_").to_numpy()
    from_wave = predictor.predict([(wave, rate)]).filter(like="prob_").to_numpy()
    np.testing.assert_allclose(from_wave, from_file, atol=1e-6)
    with pytest.raises(ConfigError, match="--hop needs --window"):
        predictor.predict([path], hop=1.0)


def test_inputs_sharing_an_id_keep_their_own_rows(weighted_run, corpus_manifest, tmp_path):
    folder, _ = weighted_run
    path = corpus_manifest["path"].iloc[0]
    predictor = predict.load(folder, "cpu")
    alone = predictor.predict([path]).filter(like="prob_").to_numpy()
    twice = predictor.predict([path, path], window=0.5)
    assert list(twice["window"]).count("all") == 2
    assert len(twice) == 2 * len(predictor.predict([path], window=0.5))
    first, second = (corpus_manifest.iloc[[i]].copy() for i in (0, 1))
    second["utt_id"] = first["utt_id"].iloc[0]  # one id, two files
    for i, part in enumerate((first, second)):
        part.to_csv(tmp_path / f"m{i}.csv", index=False)
    both = predictor.predict([tmp_path / "m0.csv", tmp_path / "m1.csv"])
    apart = [predictor.predict(tmp_path / f"m{i}.csv") for i in (0, 1)]
    np.testing.assert_allclose(both.filter(like="prob_").to_numpy()[0], alone[0], atol=1e-6)
    for row, table in zip(both.filter(like="prob_").to_numpy(), apart, strict=True):
        np.testing.assert_allclose(row, table.filter(like="prob_").to_numpy()[0], atol=1e-6)


def test_stereo_files_are_downmixed(weighted_run, tmp_path):
    import soundfile

    folder, _ = weighted_run
    rng = np.random.default_rng(0)
    right = (0.3 * rng.standard_normal(16000)).astype(np.float32)
    stereo = np.stack([np.zeros_like(right), right], axis=1)
    soundfile.write(tmp_path / "stereo.wav", stereo, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "mono.wav", stereo.mean(axis=1), 16000, subtype="FLOAT")
    table = predict.load(folder, "cpu").predict([tmp_path / "stereo.wav", tmp_path / "mono.wav"])
    probabilities = table.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-6)


def test_telephone_waveforms_are_resampled_then_conditioned_as_files(weighted_run, tmp_path):
    import soundfile

    folder, _ = weighted_run
    path = write_wav(tmp_path / "hifi.wav", seconds=1.2, sample_rate=44100, frequency=170.0)
    wave, rate = soundfile.read(path, dtype="float32")
    predictor = predict.load(folder, "cpu")
    from_file = predictor.predict([path], condition="telephone").filter(like="prob_")
    from_wave = predictor.predict([(wave, rate)], condition="telephone").filter(like="prob_")
    np.testing.assert_allclose(from_wave.to_numpy(), from_file.to_numpy(), atol=1e-6)


def test_a_top_layers_model_loads_and_reproduces_its_predictions(
    corpus_manifest, tiny_model, tmp_path
):
    folder, expected = trained(corpus_manifest, tiny_model, tmp_path, freeze="top", top_layers=1)
    paths = corpus_manifest.set_index("utt_id").loc[expected.index, "path"]
    got = predict.load(folder, "cpu").predict(list(paths)).filter(like="prob_").to_numpy()
    np.testing.assert_allclose(got, expected.filter(like="prob_").to_numpy(), atol=1e-5)


def test_an_adapter_on_changed_base_weights_is_refused(corpus_manifest, tiny_model, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    folder, _ = trained(corpus_manifest, base, tmp_path / "out", adapter="lora", lora_rank=2)
    weights = load_file(str(base / "model.safetensors"))
    save_file(
        {k: v * 1.5 if v.is_floating_point() else v for k, v in weights.items()},
        str(base / "model.safetensors"),
    )
    with pytest.raises(ConfigError, match="adapter was trained on .* at revision"):
        predict.load(folder, "cpu")
    assert torch.is_tensor(weights[next(iter(weights))])
