"""Classic baselines: eGeMAPS, MFCC and log-mel statistics in the cache format."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.fft import dct
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from ssl_ser import audio, cache
from ssl_ser.errors import ConfigError
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.extract.classic import log_mel, mel_filters, mfcc

from .helpers import make_manifest

NATS_PER_DB = math.log(10) / 10


def independent_log_mel(
    wave: np.ndarray, n_mels: int, sample_rate: int = 16000, db_range: float | None = 80.0
) -> np.ndarray:
    """(frames, n_mels) log-mel energies through transformers' own audio utilities.

    librosa's ``power_to_db(ref=1.0, amin=1e-10, top_db=db_range)`` in dB,
    converted to nats; the filterbank spans 0..8 kHz.
    """
    window = int(round(0.025 * sample_rate))
    n_fft = max(512, 2 ** math.ceil(math.log2(window)))
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=min(8000.0, sample_rate / 2),
        sampling_rate=sample_rate,
        norm=None,
        mel_scale="htk",
    )
    decibels = spectrogram(
        wave.astype(np.float64),
        window_function(window, "hann", periodic=True),
        frame_length=window,
        hop_length=int(round(0.010 * sample_rate)),
        fft_length=n_fft,
        power=2.0,
        center=False,
        mel_filters=filters,
        mel_floor=1e-10,
        log_mel="dB",
        reference=1.0,
        min_value=1e-10,
        db_range=db_range,
        dtype=np.float64,
    )
    return decibels.T * NATS_PER_DB


def telephone_noise(seconds: float = 1.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """White noise at 16 kHz and its telephone version (nothing left above 4 kHz)."""
    clean = 0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))
    clean = clean.astype(np.float32)
    return clean, audio.telephone(clean, 16000)


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


def test_log_mel_of_band_limited_audio_matches_a_db_floor_80_db_under_the_peak():
    # changed deliberately (issue 8): white noise never reached the floor; telephone audio
    # does, and the floor is now librosa's top_db=80 instead of log(1e-10) = -23
    _, phone = telephone_noise()
    ours = log_mel(phone, 16000, 40)
    np.testing.assert_allclose(ours, independent_log_mel(phone, 40), atol=1e-6)
    floor = ours.max() - 80 * NATS_PER_DB
    assert ours.min() == pytest.approx(floor)
    assert (ours[:, -5:] == floor).all()  # the bands above 4 kHz sit on the floor
    absolute = log_mel(phone, 16000, 40, top_db=None)
    np.testing.assert_allclose(absolute, independent_log_mel(phone, 40, db_range=None), atol=1e-6)
    assert absolute.min() < floor - 3


def test_telephone_features_stay_within_the_relative_floor_of_the_clean_ones():
    clean, phone = telephone_noise()
    for kind in ("logmel", "mfcc"):
        if kind == "logmel":
            a, b = log_mel(clean, 16000, 40), log_mel(phone, 16000, 40)
        else:
            a, b = mfcc(clean, 16000, 40, 20), mfcc(phone, 16000, 40, 20)
        assert np.isfinite(b).all()
        # no band (or cepstral summary of them) drifts further than the 80 dB floor allows
        gap = np.abs(a.mean(0) - b.mean(0))
        bound = 80 * NATS_PER_DB * (1.0 if kind == "logmel" else math.sqrt(40))
        assert gap.max() <= bound
    lost = np.abs(log_mel(clean, 16000, 40).mean(0) - log_mel(phone, 16000, 40).mean(0))[-5:]
    old = np.abs(
        log_mel(clean, 16000, 40, top_db=None).mean(0)
        - log_mel(phone, 16000, 40, top_db=None).mean(0)
    )[-5:]
    assert lost.max() <= 80 * NATS_PER_DB < old.min()


def test_top_db_must_not_be_negative():
    with pytest.raises(ConfigError, match="top_db -1"):
        log_mel(np.zeros(400, np.float32), 16000, 8, top_db=-1)


def test_digital_silence_gives_finite_constant_features():
    silent = log_mel(np.zeros(1600, np.float32), 16000, 8)
    assert np.isfinite(silent).all() and np.ptp(silent) == 0


def test_mel_range_is_capped_at_8_khz_at_any_rate():
    n_fft = 2048
    ours = mel_filters(48000, n_fft, 40)
    expected = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=40,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=48000,
        norm=None,
        mel_scale="htk",
    )
    np.testing.assert_allclose(ours, expected, atol=1e-12)
    bins = np.linspace(0, 24000, n_fft // 2 + 1)
    assert not ours[bins > 8000].any()
    wave = np.random.default_rng(2).standard_normal(48000).astype(np.float32)
    np.testing.assert_allclose(
        log_mel(wave, 48000, 40), independent_log_mel(wave, 40, sample_rate=48000), atol=1e-8
    )


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
        # a 16 kHz recording: its native rate is the extractor's rate
        stored = reader.read_rows([row.utt_id], "mean")[0, 0]
        np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max())


def smile():
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )


@pytest.mark.parametrize("condition", ["clean", "telephone"])
def test_egemaps_is_computed_at_the_recordings_own_rate(tmp_path, condition):
    table = make_manifest(tmp_path / "audio", [0.8, 1.1], sample_rate=48000)
    config = ExtractorConfig.for_model("egemaps")
    (summary,) = extract(table, config, tmp_path / "cache", condition, workers=0)
    engine = smile()
    with cache.open(summary.path) as reader:
        assert reader.key["sample_rate"] == "native"
        for _, row in table.iterrows():
            recorded = audio.load(row.path, sample_rate=48000)
            if condition == "clean":
                native = engine.process_signal(recorded, 48000)
            else:  # the chain's own 8 kHz output, as a telephone line carries it
                native = engine.process_signal(audio.telephone_narrowband(recorded, 48000), 8000)
            resampled = engine.process_signal(audio.load_utterance(row, condition), 16000)
            native, resampled = native.to_numpy()[0], resampled.to_numpy()[0]
            stored = reader.read_rows([row.utt_id], "mean")[0, 0]
            scale = np.abs(native) + 1e-3 * np.abs(native).max()
            np.testing.assert_allclose(stored, native, rtol=1e-5, atol=1e-5 * np.abs(native).max())
            assert (np.abs(resampled - native) / scale > 0.1).sum() >= 10  # the test can tell


def test_mfcc_and_logmel_stay_at_the_fixed_rate(tmp_path):
    table = make_manifest(tmp_path / "audio", [0.6], sample_rate=48000)
    (summary,) = extract(table, ExtractorConfig(model="mfcc"), tmp_path / "cache", workers=0)
    wave = audio.load_utterance(table.iloc[0])  # resampled to 16 kHz
    expected = mfcc(wave, 16000, 40, 20)
    with cache.open(summary.path) as reader:
        assert reader.key["sample_rate"] == 16000
        np.testing.assert_allclose(
            reader.read_rows([table.utt_id[0]], "mean")[0, 0], expected.mean(0), rtol=1e-5
        )


def test_egemaps_has_no_std_pooling():
    with pytest.raises(ConfigError, match="egemaps"):
        ExtractorConfig(model="egemaps", poolings=("mean", "std"))
