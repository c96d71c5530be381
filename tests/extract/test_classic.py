"""Classic baselines: eGeMAPS, MFCC and log-mel statistics in the cache format."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dct
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from ssl_ser import audio, cache
from ssl_ser.errors import ConfigError
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.extract.classic import log_mel

from .helpers import make_manifest


def independent_log_mel(wave: np.ndarray, n_mels: int) -> np.ndarray:
    """(frames, n_mels) log-mel energies through transformers' own audio utilities."""
    filters = mel_filter_bank(
        num_frequency_bins=257,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm=None,
        mel_scale="htk",
    )
    power = spectrogram(
        wave.astype(np.float64),
        window_function(400, "hann", periodic=True),
        frame_length=400,
        hop_length=160,
        fft_length=512,
        power=2.0,
        center=False,
        mel_filters=filters,
        mel_floor=1e-10,
        log_mel="log",
    )
    return power.T


@pytest.fixture
def table(tmp_path):
    return make_manifest(tmp_path / "audio", [0.3, 0.75, 1.2])


def test_mfcc_cache_holds_mean_and_std_of_independent_mfccs(table, tmp_path):
    config = ExtractorConfig(model="mfcc", n_mels=40, n_mfcc=13)
    (summary,) = extract(table, config, tmp_path / "cache", workers=1)
    assert summary.extracted == 3 and summary.layers == 1
    with cache.open(summary.path) as reader:
        assert reader.shape == (3, 1, 13) and reader.layers == ["0"]
        assert reader.key["model_type"] == "classic"
        for _, row in table.iterrows():
            wave = audio.load_utterance(row)
            mfcc = dct(independent_log_mel(wave, 40), type=2, norm="ortho", axis=1)[:, :13]
            assert mfcc.shape[0] == 1 + (wave.size - 400) // 160
            for pooling, expected in (("mean", mfcc.mean(0)), ("std", mfcc.std(0))):
                stored = reader.read_rows([row.utt_id], pooling)[0, 0]
                np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3)


def test_log_mel_matches_transformers_audio_utils():
    wave = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    np.testing.assert_allclose(log_mel(wave, 16000, 64), independent_log_mel(wave, 64), atol=1e-8)


def test_logmel_cache_shape(table, tmp_path):
    (summary,) = extract(table, ExtractorConfig(model="logmel", n_mels=24), tmp_path / "c")
    with cache.open(summary.path) as reader:
        assert reader.shape == (3, 1, 24) and reader.poolings == ["mean", "std"]


def test_egemaps_cache_holds_the_88_functionals(table, tmp_path):
    import opensmile

    config = ExtractorConfig.for_model("egemaps")
    (summary,) = extract(table, config, tmp_path / "cache", workers=0)
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    with cache.open(summary.path) as reader:
        assert reader.shape == (3, 1, 88) and reader.poolings == ["mean"]
        row = table.iloc[1]
        expected = smile.process_signal(audio.load_utterance(row), 16000).to_numpy()[0]
        stored = reader.read_rows([row.utt_id], "mean")[0, 0]
        np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max())


def test_egemaps_has_no_std_pooling():
    with pytest.raises(ConfigError, match="egemaps"):
        ExtractorConfig(model="egemaps", poolings=("mean", "std"))
