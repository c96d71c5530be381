"""Pooled features of every model family equal a direct transformers forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.extract.backbones import load_backbone
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.extract.masking import whisper_states
from ssl_ser.extract.pooling import FrameStats, combine, finalize
from ssl_ser.testing import tone

from .helpers import WAVEFORM_FAMILIES

SECONDS = (0.37, 1.21, 0.8, 0.52, 1.5)


def waves(seconds=SECONDS, rate=16000) -> list[np.ndarray]:
    return [tone(s, rate, frequency=110 + 40 * i, seed=i) for i, s in enumerate(seconds)]


def reference_waveform(folder, wave) -> list[np.ndarray]:
    """(mean, std) per hidden state from a plain forward pass of one utterance."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        states = model(inputs["input_values"], output_hidden_states=True).hidden_states
    return [(s[0].numpy().mean(0), s[0].numpy().std(0)) for s in states]


def reference_whisper(folder, wave) -> list[np.ndarray]:
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    encoder = transformers.AutoModel.from_pretrained(folder).get_encoder().eval()
    inputs = extractor(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    mel_frames = inputs["attention_mask"].sum(-1)
    frames = int(encoder._get_feat_extract_output_lengths(mel_frames)[0])
    with torch.no_grad():
        states = encoder(inputs["input_features"], output_hidden_states=True).hidden_states
    return [(s[0, :frames].numpy().mean(0), s[0, :frames].numpy().std(0)) for s in states]


def pooled(backbone, segments) -> dict[str, np.ndarray]:
    return finalize(backbone.run(segments), ("mean", "std"))


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def assert_matches_reference(result: dict[str, np.ndarray], row: int, reference) -> None:
    assert result["mean"].shape[1] == len(reference)
    for layer, (mean, std) in enumerate(reference):
        assert relative_error(result["mean"][row, layer], mean) < 1e-4, layer
        assert relative_error(result["std"][row, layer], std) < 1e-4, layer


@pytest.mark.parametrize("family", WAVEFORM_FAMILIES)
def test_waveform_family_equals_direct_forward_batched_and_alone(model_dirs, family):
    folder = model_dirs[family]
    backbone = load_backbone(ExtractorConfig(model=str(folder)), device="cpu")
    audio = waves()
    segments = [backbone.preprocessor(w)[0] for w in audio]
    batched = pooled(backbone, segments)
    assert batched["mean"].shape == (len(audio), 3, 32)
    for row, wave in enumerate(audio):
        reference = reference_waveform(folder, wave)
        assert_matches_reference(batched, row, reference)
        assert_matches_reference(pooled(backbone, [segments[row]]), 0, reference)


def test_group_norm_front_end_would_change_under_plain_padding(model_dirs):
    """The masked front end is needed: plain zero padding changes group-norm models."""
    folder = model_dirs["wav2vec2-group"]
    model = transformers.AutoModel.from_pretrained(folder).eval()
    short, long = waves((0.4, 1.4))[:2]
    padded = np.zeros((2, long.size), dtype=np.float32)
    padded[0, : short.size], padded[1] = short, long
    mask = torch.from_numpy(padded != 0).long()
    mask[1] = 1
    with torch.no_grad():
        alone = model(torch.from_numpy(short)[None], output_hidden_states=True).last_hidden_state
        batch = model(torch.from_numpy(padded), attention_mask=mask).last_hidden_state
    frames = alone.shape[1]
    assert relative_error(batch[0, :frames].numpy(), alone[0].numpy()) > 1e-3


def test_whisper_pools_only_real_audio_frames(model_dirs):
    folder = model_dirs["whisper"]
    backbone = load_backbone(ExtractorConfig(model=str(folder)), device="cpu")
    audio = waves((0.37, 1.21))
    segments = [backbone.preprocessor(w)[0] for w in audio]
    assert [s.values.shape for s in segments] == [(80, 3000)] * 2
    batched = pooled(backbone, segments)
    for row, wave in enumerate(audio):
        assert_matches_reference(batched, row, reference_whisper(folder, wave))


def test_whisper_trim_batched_equals_alone_and_full_window_matches_encoder(model_dirs):
    folder = model_dirs["whisper"]
    backbone = load_backbone(ExtractorConfig(model=str(folder), whisper_trim=True), device="cpu")
    audio = waves((0.37, 1.21, 0.9))
    segments = [backbone.preprocessor(w)[0] for w in audio]
    assert [s.values.shape[1] for s in segments] == [int(np.ceil(w.size / 160)) for w in audio]
    batched = pooled(backbone, segments)
    for row in range(len(audio)):
        alone = pooled(backbone, [segments[row]])
        for pooling in ("mean", "std"):
            assert relative_error(batched[pooling][row], alone[pooling][0]) < 1e-4
    # The trimmed forward at full length is the library's own encoder forward.
    encoder = backbone.model
    features = torch.randn(1, 80, 3000)
    with torch.no_grad():
        ours = whisper_states(encoder, features, None)
        theirs = encoder(features, output_hidden_states=True).hidden_states
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs, strict=True):
        assert relative_error(a.numpy(), b.numpy()) < 1e-5


def test_windows_of_a_long_utterance_combine_exactly(model_dirs):
    folder = model_dirs["wav2vec2-layer"]
    config = ExtractorConfig(model=str(folder), max_seconds=0.5, long_audio="window")
    backbone = load_backbone(config, device="cpu")
    wave = waves((1.3,))[0]
    segments = backbone.preprocessor(wave)
    assert len(segments) == 3
    merged = finalize(combine(backbone.run(segments)), ("mean", "std"))
    # independent: normalise and run three equal windows, pool all their frames at once
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    frames = []
    for window in np.array_split(wave, 3):
        inputs = extractor(window, sampling_rate=16000, return_tensors="pt")["input_values"]
        with torch.no_grad():
            frames.append(model(inputs, output_hidden_states=True).hidden_states)
    for layer in range(3):
        stacked = np.concatenate([f[layer][0].numpy() for f in frames])
        assert relative_error(merged["mean"][0, layer], stacked.mean(0)) < 1e-4
        assert relative_error(merged["std"][0, layer], stacked.std(0)) < 1e-4


def test_stats_of_one_frame_have_zero_std():
    stats = FrameStats(np.array([1]), np.ones((1, 2, 3)), np.zeros((1, 2, 3)))
    assert np.all(finalize(stats, ("std",))["std"] == 0)


def test_float16_on_cpu_is_refused(model_dirs):
    with pytest.raises(ConfigError, match="float16"):
        load_backbone(ExtractorConfig(model=str(model_dirs["hubert"]), dtype="float16"), "cpu")


def test_unsupported_model_type_is_refused(tmp_path):
    transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(tmp_path)
    with pytest.raises(UnknownChoiceError, match="bert"):
        load_backbone(ExtractorConfig(model=str(tmp_path)), "cpu")


class _Payload:
    """Pickles as a call of os.system: what a hostile weights file would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_with_code_are_refused_in_words(model_dirs, tmp_path):
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(model_dirs["hubert"], folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    torch.save({"weights": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"'.*hostile'.* refused.*posix\.system|system") as error:
        load_backbone(ExtractorConfig(model=str(folder)), "cpu")
    assert "could run code" in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["wav2vec2-group", "whisper", "mfcc"])
def test_identity_from_the_config_file_is_the_loaded_models(model_dirs, name):
    """What a --dask re-run compares against a merged cache's key, without the weights."""
    from ssl_ser.extract.backbones import identity_of

    config = ExtractorConfig.for_model(name) if name == "mfcc" else None
    config = config or ExtractorConfig(model=str(model_dirs[name]))
    assert identity_of(config) == load_backbone(config, device="cpu").identity
