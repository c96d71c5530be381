"""ser predict reads audio as the training audio was read, refuses truncated files, writes output.

EMOVO's stereo recordings are read as channel 0 by corpus policy; a probe fitted
on their cached features must label the same files with the same numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner

from ssl_ser import audio, corpora, predict, synth
from ssl_ser.classify.features import CacheFeatures
from ssl_ser.cli.main import cli
from ssl_ser.errors import AudioError, ConfigError
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.extract.runner import extract
from ssl_ser.predict import integrity
from ssl_ser.predict.export import export_probe
from ssl_ser.testing import write_wav

# EMOVO speaker -> synthetic voice; EMOVO code -> the emotion synthesised
SPEAKERS = {"f1": 3, "f2": 4, "m1": 0, "m2": 1}
CODES = {"rab": "angry", "gio": "happy", "tri": "sad", "neu": "neutral"}
OTHER = {"angry": "sad", "happy": "neutral", "sad": "angry", "neutral": "happy"}


def write_stereo_emovo(root: Path) -> None:
    """EMOVO-named two-channel files: the utterance on channel 0, another on channel 1."""
    for speaker, voice_index in SPEAKERS.items():
        voice = synth.DEFAULT_VOICES[voice_index]
        for code, emotion in CODES.items():
            for sentence in (1, 2):
                left = synth.utterance(voice, emotion, sentence)
                right = synth.utterance(voice, OTHER[emotion], sentence + 5)
                right = np.resize(right, left.shape)
                path = root / speaker / f"{code}-{speaker}-b{sentence}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, np.stack([left, right], axis=1), synth.SAMPLE_RATE, "PCM_16")


@pytest.fixture(scope="module")
def emovo(tiny_model, tmp_path_factory) -> tuple[pd.DataFrame, CacheFeatures]:
    root = tmp_path_factory.mktemp("emovo") / "emovo"
    write_stereo_emovo(root)
    manifest = corpora.load("emovo", root)
    cache_dir = tmp_path_factory.mktemp("emovo-cache")
    (summary,) = extract(
        manifest, ExtractorConfig(str(tiny_model)), cache_dir, device="cpu", workers=0
    )
    return manifest, CacheFeatures(summary.path)


@pytest.fixture(scope="module")
def synth_cache(corpus_manifest, tiny_model, tmp_path_factory) -> CacheFeatures:
    folder = tmp_path_factory.mktemp("reading-cache")
    (summary,) = extract(
        corpus_manifest, ExtractorConfig(str(tiny_model)), folder, device="cpu", workers=0
    )
    return CacheFeatures(summary.path)


@pytest.fixture(scope="module")
def bundle(synth_cache, corpus_manifest, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reading-bundle") / "b"
    return export_probe([synth_cache], corpus_manifest, folder, layers="2").folder


def cached(cache: CacheFeatures, manifest: pd.DataFrame, layer: str) -> np.ndarray:
    return cache.read(layer)[[cache.ids.index(u) for u in manifest["utt_id"]]]


@pytest.mark.slow
def test_stereo_files_are_read_as_the_training_audio_was(emovo, tmp_path):
    manifest, cache = emovo
    assert set(manifest["channel"]) == {0}
    exported = export_probe([cache], manifest, tmp_path / "b", layers="2")
    predictor = predict.load(exported.folder, "cpu")
    assert integrity.verify(exported.folder).audio == {
        "channels": {"emovo": [0]},
        "sample_rate": 16000,
        "condition": "clean",
        "telephone_source": None,
    }
    expected = predictor.classify(cached(cache, manifest, "2"))
    table = predictor.predict(list(manifest["path"]))
    assert table["error"].isna().all()
    np.testing.assert_allclose(table.filter(like="prob_").to_numpy(), expected, atol=1e-6)
    # the test tells the readings apart: downmixed, the same files give other numbers
    downmixed = manifest.assign(channel=-1)
    downmixed.to_csv(tmp_path / "downmix.csv", index=False)
    other = predictor.predict(tmp_path / "downmix.csv").filter(like="prob_").to_numpy()
    assert np.abs(other - expected).max() > 1e-2


def test_a_probe_trained_on_telephone_audio_reads_new_audio_through_the_chain(
    synth_cache, corpus_manifest, tiny_model, tmp_path, caplog
):
    (summary,) = extract(
        corpus_manifest,
        ExtractorConfig(str(tiny_model)),
        tmp_path / "cache",
        "telephone",
        device="cpu",
        workers=0,
    )
    cache = CacheFeatures(summary.path)
    folder = export_probe([cache], corpus_manifest, tmp_path / "b", layers="2").folder
    predictor = predict.load(folder, "cpu")
    assert predictor.reading["condition"] == "telephone"
    paths = list(corpus_manifest["path"][:6])
    expected = predictor.classify(cached(cache, corpus_manifest.head(6), "2"))
    table = predictor.predict(paths)
    np.testing.assert_allclose(table.filter(like="prob_").to_numpy(), expected, atol=1e-6)
    with caplog.at_level(logging.WARNING):
        clean = predictor.predict(paths, condition="clean").filter(like="prob_").to_numpy()
    assert "the model was trained on telephone audio; reading the new audio as clean" in (
        caplog.text
    )
    assert np.abs(clean - expected).max() > 1e-3


def test_a_multichannel_file_is_refused_when_training_read_corpora_differently(
    emovo, synth_cache, corpus_manifest, tmp_path
):
    manifest, cache = emovo
    both = pd.concat([manifest, corpus_manifest.assign(channel=-1)], ignore_index=True)
    folder = export_probe([cache, synth_cache], both, tmp_path / "b", layers="2").folder
    predictor = predict.load(folder, "cpu")
    stereo, mono = manifest["path"].iloc[0], corpus_manifest["path"].iloc[0]
    table = predictor.predict([stereo, mono]).set_index("path")
    assert table.at[stereo, "error"] == (
        "the model's training audio was read per corpus as (emovo: channel 0; synth: "
        "downmixed); which applies to this 2-channel file is unknown: list it in a "
        "manifest with a channel column"
    )
    assert np.isnan(table.loc[stereo].filter(like="prob_").to_numpy(float)).all()
    assert pd.isna(table.at[mono, "error"])
    manifest.head(1).to_csv(tmp_path / "m.csv", index=False)
    listed = predictor.predict(tmp_path / "m.csv")
    expected = predictor.classify(cached(cache, manifest.head(1), "2"))
    np.testing.assert_allclose(listed.filter(like="prob_").to_numpy(), expected, atol=1e-6)


def test_a_model_reading_audio_at_another_rate_than_its_training_audio_is_refused(bundle, tmp_path):
    import shutil

    folder = tmp_path / "b"
    shutil.copytree(bundle, folder)
    record = integrity.read_record(folder)
    integrity.seal(folder, record.kind, record.outputs, {**record.audio, "sample_rate": 8000})
    with pytest.raises(ConfigError, match="training audio was read at 8000 Hz, but its model now"):
        predict.load(folder, "cpu")


def cut_wav(path: Path, size: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:size])
    return path


def test_a_truncated_wav_is_reported_not_labelled(bundle, tmp_path):
    good = write_wav(tmp_path / "good.wav", seconds=2.0, sample_rate=16000)
    cut = cut_wav(write_wav(tmp_path / "cut.wav", seconds=2.0, sample_rate=16000), 3000)
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        cli, ["predict", str(bundle), str(good), str(cut), "--device", "cpu", "--output", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "1 file(s) labelled, 1 failed" in result.stderr
    table = pd.read_csv(out).set_index("path")
    assert (
        "truncated: its header declares 32000 frames (2.000 s) but only 1478 (0.092 s)"
        in (table.at[str(cut), "error"])
    )
    assert pd.isna(table.at[str(cut), "predicted"])
    assert table.at[str(good), "predicted"] in {"angry", "happy", "sad", "neutral"}


def test_whole_and_streamed_wavs_pass_the_header_check(tmp_path):
    whole = write_wav(tmp_path / "whole.wav", seconds=0.5, sample_rate=16000)
    audio.check_complete(whole)
    streamed = tmp_path / "streamed.wav"
    data = bytearray(whole.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = (0xFFFFFFFF).to_bytes(4, "little")  # length unknown while streaming
    streamed.write_bytes(bytes(data))
    audio.check_complete(streamed)
    with pytest.raises(AudioError, match=r"declares 8000 frames \(0.500 s\) but only 100"):
        audio.check_complete(cut_wav(whole, 44 + 200))


def test_predict_output_into_a_missing_folder_creates_it(bundle, tmp_path):
    clip = write_wav(tmp_path / "clip.wav", seconds=1.0, sample_rate=16000)
    out = tmp_path / "new" / "deeper" / "p.csv"
    arguments = ["predict", str(bundle), str(clip), "--device", "cpu", "--output"]
    result = CliRunner().invoke(cli, [*arguments, str(out)])
    assert result.exit_code == 0, result.output
    assert f"1 file(s) labelled, 0 failed; table in {out}" in result.stderr
    assert list(pd.read_csv(out)["path"]) == [str(clip)]
    (tmp_path / "plain").write_text("a file")
    blocked = CliRunner().invoke(cli, [*arguments, str(tmp_path / "plain" / "p.csv")])
    assert blocked.exit_code == 1
    assert blocked.stderr == (
        f"error: --output {tmp_path / 'plain' / 'p.csv'}: cannot create its folder "
        f"{tmp_path / 'plain'} (File exists)\n"
    )
