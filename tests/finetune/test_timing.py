"""ser bench-inference: every part timed per duration, resampling real, CUDA synchronised."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from ssl_ser import predict
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune
from ssl_ser.predict import timing

DURATIONS = (0.5, 1.0)
SETTINGS = RunOptions(
    split="speaker", split_options=SplitOptions(), device="cpu", workers=0, bootstrap=10
)


@pytest.fixture(scope="module")
def bundle(corpus_manifest, tiny_model, tmp_path_factory):
    """A fine-tuned model folder (one epoch of the head and layer weights, MLP head)."""
    output = tmp_path_factory.mktemp("ft-timing")
    config = FinetuneConfig(
        model=str(tiny_model),
        epochs=1,
        learning_rate=1e-3,
        batch_seconds=8.0,
        patience=None,
        weighted_layers=True,
        head="mlp",
        freeze="base",
    )
    run_finetune(corpus_manifest, config, SETTINGS, output)
    return next((output / "models").iterdir())


@pytest.fixture(scope="module")
def bare(tiny_model):
    return timing.load_pipeline(tiny_model, "cpu")


def test_the_table_has_every_part_for_every_duration_and_the_cli_writes_it(tiny_model, tmp_path):
    out = tmp_path / "timing" / "bench.csv"
    arguments = ["--durations", "0.5,1", "--repeats", "3", "--warmup", "1", "--device", "cpu"]
    arguments += ["--threads", "1"]
    result = CliRunner().invoke(
        cli, ["bench-inference", "--model", str(tiny_model), *arguments, "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    expected = set(itertools.product(DURATIONS, (*timing.PARTS, timing.TOTAL)))
    assert set(zip(table["duration_s"], table["part"], strict=True)) == expected
    assert len(table) == len(expected)
    assert (table["median_ms"] <= table["p95_ms"]).all()
    assert (table["median_ms"] >= 0).all()
    for part in ("resample", "preprocess", "forward", "classifier"):
        assert (table.loc[table["part"] == part, "median_ms"] > 0).all(), part
    total = table[table["part"] == timing.TOTAL]
    np.testing.assert_allclose(total["rtf"], total["median_ms"] / 1000 / total["duration_s"])
    assert set(table["repeats"]) == {3} and set(table["warmup"]) == {1}
    printed = result.stdout.splitlines()
    assert timing.MODEL_CLASSIFIER in result.stdout
    assert any(line.split()[0] == "0.5" for line in printed)
    assert any(line.split()[0] == "1" for line in printed)


def test_totals_are_the_sum_of_the_parts_of_each_run(bare):
    times, _ = timing.time_duration(bare, 0.5, 8000, repeats=4, warmup=0)
    assert all(len(times[part]) == 4 for part in (*timing.PARTS, timing.TOTAL))
    parts = np.sum([times[part] for part in timing.PARTS], axis=0)
    np.testing.assert_allclose(times[timing.TOTAL], parts)
    table = timing.bench(bare, (0.5,), 8000, repeats=4, warmup=0)
    total = table.set_index("part").loc[timing.TOTAL]
    assert total["rtf"] == pytest.approx(total["median_ms"] / 1000 / 0.5)


@pytest.mark.parametrize("seconds", DURATIONS)
def test_8k_input_is_resampled_to_the_models_16k(bare, seconds):
    wave = timing.synthetic_audio(seconds, 8000)
    assert wave.shape == (round(seconds * 8000),)
    run = timing.time_once(bare, wave, 8000)
    assert run.length == round(seconds * 16000)
    assert run.seconds["resample"] > 0
    native = timing.time_once(bare, timing.synthetic_audio(seconds, 16000), 16000)
    assert native.length == round(seconds * 16000)


def test_a_bare_model_times_extractions_pooling(bare):
    wave = timing.synthetic_audio(1.0, 8000)
    run = timing.time_once(bare, wave, 8000)
    from ssl_ser import audio

    segments = bare.backbone.preprocessor(audio.resample(wave, 8000, 16000))
    expected = bare.backbone.run(segments).mean
    assert bare.kind == "model" and bare.note == timing.MODEL_CLASSIFIER
    assert run.output.shape == (1, bare.backbone.states, bare.backbone.dim)
    np.testing.assert_allclose(run.output, expected, rtol=1e-5, atol=1e-6)


def test_a_bundle_times_pooling_head_and_softmax_as_predict_runs_them(bundle, tmp_path):
    pipeline = timing.load_pipeline(bundle, "cpu")
    assert pipeline.kind == "bundle" and pipeline.note == timing.BUNDLE_CLASSIFIER
    wave = timing.synthetic_audio(1.0, 8000)
    run = timing.time_once(pipeline, wave, 8000)
    path = tmp_path / "one.wav"
    import soundfile as sf

    sf.write(str(path), wave, 8000, subtype="FLOAT")
    table = predict.load(bundle, "cpu").predict([path])
    np.testing.assert_allclose(run.output, table.filter(like="prob_").to_numpy(), atol=1e-5)
    assert run.output.sum() == pytest.approx(1.0)
    timings = timing.bench(pipeline, (0.5,), 8000, repeats=2, warmup=1)
    assert (timings.loc[timings["part"] == "classifier", "note"] == timing.BUNDLE_CLASSIFIER).all()


def test_cuda_is_synchronised_around_each_clock_read_and_only_on_cuda(bare, monkeypatch):
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    timing.bench(bare, (0.5,), 8000, repeats=2, warmup=1)
    assert events == []
    timing.synchronize(torch.device("cpu"))
    assert events == []
    clock = iter(range(100))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: events.append("clock") or next(clock))
    result, seconds = timing.timed(lambda: events.append("work") or 7, torch.device("cuda", 0))
    assert (result, seconds) == (7, 1)
    assert events == ["sync", "clock", "work", "sync", "clock"]


def test_the_forward_pass_gets_the_transferred_batch_or_refuses(bare):
    tensor = torch.zeros(1, 8000)
    with timing.transferred(bare.backbone, tensor):
        assert bare.backbone.to_device(np.ones((1, 8000), np.float32)) is tensor
        with pytest.raises(RuntimeError, match=r"\(1, 4000\)"):
            bare.backbone.to_device(np.ones((1, 4000), np.float32))
    moved = bare.backbone.to_device(np.ones((1, 10), np.float32))
    assert moved.shape == (1, 10) and moved is not tensor


@pytest.mark.parametrize(
    ("durations", "rate", "repeats", "warmup", "named"),
    [
        ((0.0,), 8000, 3, 1, "durations"),
        ((), 8000, 3, 1, "durations"),
        ((1.0,), 0, 3, 1, "input rate 0"),
        ((1.0,), 8000, 0, 1, "repeats 0"),
        ((1.0,), 8000, 3, -1, "warmup -1"),
    ],
)
def test_bad_settings_are_refused_by_name(durations, rate, repeats, warmup, named):
    with pytest.raises(ConfigError, match=named):
        timing.check_settings(durations, rate, repeats, warmup)


def test_the_cli_refuses_bad_durations_and_classic_baselines(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["bench-inference", "--model", "mfcc", "--durations", "1,x"])
    assert (
        result.exit_code == 1 and "--durations must be a number; got a string 'x'" in result.stderr
    )
    result = runner.invoke(
        cli, ["bench-inference", "--model", "mfcc", "--output", str(tmp_path / "t.csv")]
    )
    assert result.exit_code == 1 and "classic baseline" in result.stderr
    result = runner.invoke(cli, ["bench-inference", "--model", "mfcc", "--threads", "0"])
    assert result.exit_code == 1 and "--threads must be at least 1; got 0" in result.stderr


def test_a_whisper_encoder_is_timed_on_its_log_mel_window(tmp_path):
    from ssl_ser.testing.models import save_whisper_model

    pipeline = timing.load_pipeline(save_whisper_model(tmp_path / "whisper"), "cpu")
    run = timing.time_once(pipeline, timing.synthetic_audio(0.5, 8000), 8000)
    assert run.length == 3000  # 30 s of log-mel frames: Whisper untrimmed sees a whole window
    assert run.output.shape == (1, pipeline.backbone.states, pipeline.backbone.dim)
    assert all(run.seconds[part] > 0 for part in ("resample", "preprocess", "forward"))


def test_whisper_trim_times_the_audio_frames_only(tmp_path):
    from ssl_ser.testing.models import save_whisper_model

    model = save_whisper_model(tmp_path / "whisper")
    wave = timing.synthetic_audio(0.5, 8000)
    padded = timing.time_once(timing.load_pipeline(model, "cpu"), wave, 8000)
    trimmed = timing.time_once(timing.load_pipeline(model, "cpu", whisper_trim=True), wave, 8000)
    assert padded.length == 3000
    assert trimmed.length == 50  # 0.5 s of 10 ms log-mel frames: what --whisper-trim feeds
    assert trimmed.output.shape == padded.output.shape
    runner = CliRunner()
    out = tmp_path / "trim.csv"
    args = ["bench-inference", "--model", str(model), "--durations", "1", "--device", "cpu"]
    result = runner.invoke(cli, [*args, "--repeats", "1", "--warmup", "0", "--output", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli, [*args, "--repeats", "1", "--warmup", "0", "--whisper-trim", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out)["model_input_length"]) == {100}


def test_whisper_trim_is_refused_for_other_models_and_untrimmed_bundles(
    tiny_model, bundle, tmp_path
):
    with pytest.raises(ConfigError, match="--whisper-trim applies to Whisper models only"):
        timing.load_pipeline(tiny_model, "cpu", whisper_trim=True)
    with pytest.raises(ConfigError, match=r"was made without --whisper-trim.*leave --whisper-trim"):
        timing.load_pipeline(bundle, "cpu", whisper_trim=True)
