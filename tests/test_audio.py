import json
import math
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import signal

from ssl_ser import audio
from ssl_ser.errors import AudioError, ConfigError, ManifestError, UnknownChoiceError
from ssl_ser.manifest import DOWNMIX
from ssl_ser.testing import write_empty_wav, write_garbage, write_wav


def band_energy(wave, rate, low, high):
    freqs, psd = signal.welch(wave, fs=rate, nperseg=2048)
    return psd[(freqs >= low) & (freqs <= high)].sum()


def write_sine(path, frequency, rate, seconds=1.0, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), amplitude * np.sin(2 * np.pi * frequency * t), rate, subtype="FLOAT")
    return path


def peak_frequency(wave, rate):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return np.fft.rfftfreq(wave.size, 1 / rate)[np.argmax(spectrum)]


@pytest.fixture(scope="module")
def white_noise():
    return (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)


# --- telephone chain ---------------------------------------------------------------------


def test_telephone_keeps_300_to_3400_hz_and_removes_the_rest(white_noise):
    out = audio.apply_condition(white_noise, 16000, "telephone")
    in_band = band_energy(out, 16000, 300, 3400)
    below = band_energy(out, 16000, 0, 200)
    above = band_energy(out, 16000, 4000, 8000)
    assert 10 * math.log10(in_band / below) >= 40
    assert 10 * math.log10(in_band / above) >= 40
    # the pass band keeps its level: the chain filters, it does not just attenuate
    gain = band_energy(out, 16000, 500, 3000) / band_energy(white_noise, 16000, 500, 3000)
    assert abs(10 * math.log10(gain)) < 0.5


def test_telephone_is_deterministic(white_noise):
    first = audio.apply_condition(white_noise, 16000, "telephone")
    second = audio.apply_condition(white_noise.copy(), 16000, "telephone")
    assert np.array_equal(first, second)
    assert not np.array_equal(first, white_noise)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
@pytest.mark.parametrize("length", [1, 37, 16001])
def test_conditions_keep_rate_and_length(rate, length):
    wave = np.random.default_rng(length).uniform(-0.5, 0.5, length).astype(np.float32)
    for condition in audio.CONDITIONS:
        out = audio.apply_condition(wave, rate, condition)
        assert out.shape == wave.shape
        assert out.dtype == np.float32


def test_clean_condition_is_identity(white_noise):
    assert np.array_equal(audio.apply_condition(white_noise, 16000, "clean"), white_noise)


def test_mu_law_round_trip_error_is_bounded():
    x = np.linspace(-1, 1, 20001)
    codes = audio.mu_law_encode(x)
    decoded = audio.mu_law_decode(codes)
    assert codes.dtype == np.uint8
    assert len(np.unique(codes)) == 255  # sign + 7-bit magnitude, +0 and -0 coincide
    # half a step of 1/127 in the companded domain, mapped back through the mu-law curve
    mu = 255
    bound = (1 / mu + np.abs(x)) * ((1 + mu) ** (0.5 / 127) - 1)
    assert np.all(np.abs(decoded - x) <= bound + 1e-12)
    assert audio.mu_law_decode(audio.mu_law_encode(np.zeros(3))).tolist() == [0.0, 0.0, 0.0]
    assert np.allclose(audio.mu_law_decode(audio.mu_law_encode(-x)), -decoded)


def test_mu_law_clips_and_has_g711_signal_to_noise():
    assert np.allclose(audio.mu_law_decode(audio.mu_law_encode(np.array([3.0, -3.0]))), [1, -1])
    t = np.arange(8000) / 8000
    sine = 0.5 * np.sin(2 * np.pi * 1000 * t)
    noise = sine - audio.mu_law_decode(audio.mu_law_encode(sine))
    snr = 10 * math.log10(np.sum(sine**2) / np.sum(noise**2))
    assert 35 < snr < 41  # G.711 mu-law: about 38 dB for loud signals


def test_condition_params_identify_the_chain():
    clean = audio.condition_params("clean")
    telephone = audio.condition_params("telephone")
    assert json.loads(json.dumps(telephone)) == telephone
    assert json.loads(json.dumps(clean)) == clean
    assert clean != telephone
    assert telephone["version"] == audio.TelephoneChain().version
    assert (telephone["low_hz"], telephone["high_hz"], telephone["rate"]) == (300, 3400, 8000)
    assert telephone["mu"] == 255


def test_unknown_condition_lists_the_valid_ones(tmp_path):
    with pytest.raises(UnknownChoiceError, match="'radio'.*clean, telephone"):
        audio.condition_params("radio")
    with pytest.raises(UnknownChoiceError, match="clean, telephone"):
        audio.apply_condition(np.zeros(10, np.float32), 16000, "radio")
    path = write_wav(tmp_path / "a.wav")
    with pytest.raises(UnknownChoiceError, match="clean, telephone"):
        audio.load(path, condition="radio")


# --- load ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [44100, 48000, 8000])
def test_load_resamples_to_the_right_length_and_keeps_frequency(tmp_path, rate):
    path = write_sine(tmp_path / f"sine{rate}.wav", 440.0, rate, seconds=1.0)
    wave = audio.load(path)
    assert wave.dtype == np.float32
    assert wave.ndim == 1
    assert wave.size == round(sf.info(str(path)).frames * 16000 / rate) == 16000
    assert abs(peak_frequency(wave, 16000) - 440.0) <= 1.0
    assert abs(np.sqrt(np.mean(wave[1000:-1000] ** 2)) - 0.5 / math.sqrt(2)) < 0.01


def test_load_at_other_rate(tmp_path):
    path = write_sine(tmp_path / "sine.wav", 1000.0, 16000, seconds=0.5)
    wave = audio.load(path, sample_rate=22050)
    assert wave.size == round(8000 * 22050 / 16000)
    assert abs(peak_frequency(wave, 22050) - 1000.0) <= 2.0


@pytest.fixture
def stereo(tmp_path):
    rate = 16000
    t = np.arange(4000) / rate
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    right = 0.3 * np.random.default_rng(1).standard_normal(t.size)
    path = tmp_path / "two_mics.wav"
    sf.write(str(path), np.stack([left, right], axis=1), rate, subtype="FLOAT")
    return path, left.astype(np.float32), right.astype(np.float32)


def test_channel_zero_is_channel_zero_not_the_mean(stereo):
    path, left, right = stereo
    wave = audio.load(path, channel=0)
    assert np.array_equal(wave, left)
    assert not np.allclose(wave, (left + right) / 2, atol=1e-3)
    assert np.array_equal(audio.load(path, channel=1), right)


def test_downmix_averages_channels(stereo):
    path, left, right = stereo
    assert np.allclose(audio.load(path, channel=DOWNMIX), (left + right) / 2, atol=1e-7)


def test_channel_out_of_range_names_file_and_channel_count(stereo):
    path, _, _ = stereo
    with pytest.raises(AudioError, match=r"two_mics\.wav.*channel 2 out of range.*2 channel"):
        audio.load(path, channel=2)
    with pytest.raises(ConfigError, match="channel -2"):
        audio.load(path, channel=-2)


def test_load_errors_name_the_file(tmp_path):
    garbage = write_garbage(tmp_path / "garbage.wav")
    empty = write_empty_wav(tmp_path / "empty.wav")
    with pytest.raises(AudioError, match=r"garbage\.wav.*unreadable"):
        audio.load(garbage)
    with pytest.raises(AudioError, match=r"empty\.wav.*zero samples"):
        audio.load(empty)
    with pytest.raises(AudioError, match=r"missing\.wav.*does not exist"):
        audio.load(tmp_path / "missing.wav")


@pytest.mark.parametrize(("on_disk", "given"), [("NFD", "NFC"), ("NFC", "NFD")])
def test_load_finds_a_path_given_in_the_other_normalisation(tmp_path, on_disk, given):
    path = write_wav(tmp_path / unicodedata.normalize(on_disk, "Émotions") / "a.wav", seed=3)
    twin = Path(unicodedata.normalize(given, str(path)))
    assert not twin.exists()
    assert np.array_equal(audio.load(twin), audio.load(path))


def test_load_telephone_is_the_chain_on_the_clean_wave(tmp_path):
    path = write_wav(tmp_path / "tone.wav", seconds=0.3, sample_rate=44100)
    clean = audio.load(path)
    assert np.array_equal(
        audio.load(path, "telephone"), audio.apply_condition(clean, 16000, "telephone")
    )


# --- manifest rows and rendering -----------------------------------------------------------


@pytest.fixture
def rows(tmp_path):
    clean = write_wav(tmp_path / "wav" / "a.wav", seconds=0.25, frequency=500, seed=1)
    ready = write_wav(tmp_path / "wav_telephone" / "a.wav", 0.25, 8000, frequency=700, seed=2)
    other = write_wav(tmp_path / "wav" / "b.wav", seconds=0.15, frequency=300, seed=3)
    return pd.DataFrame(
        {
            "utt_id": ["toy/a", "toy/b"],
            "path": [str(clean), str(other)],
            "channel": [0, DOWNMIX],
            "telephone_path": [str(ready), ""],
        }
    )


def test_load_utterance_sources(rows):
    first = rows.iloc[0]
    assert np.array_equal(audio.load_utterance(first), audio.load(first["path"]))
    assert np.array_equal(
        audio.load_utterance(first, "telephone"), audio.load(first["path"], "telephone")
    )
    assert np.array_equal(
        audio.load_utterance(first, "telephone", telephone_source="folder"),
        audio.load(first["telephone_path"]),
    )
    # a plain mapping without the optional columns works too
    assert np.array_equal(audio.load_utterance({"path": first["path"]}), audio.load(first["path"]))


def test_load_utterance_without_ready_copy_names_the_utterance(rows):
    with pytest.raises(AudioError, match="'toy/b'.*no ready telephone copy"):
        audio.load_utterance(rows.iloc[1], "telephone", telephone_source="folder")
    with pytest.raises(UnknownChoiceError, match="derived, folder"):
        audio.load_utterance(rows.iloc[0], "telephone", telephone_source="cloud")


def test_render_condition_writes_16_bit_wavs_under_utt_ids(rows, tmp_path):
    out_dir = tmp_path / "rendered"
    written = audio.render_condition(rows, "telephone", out_dir, sample_rate=16000)
    assert written == [(out_dir / "toy" / "a.wav").resolve(), (out_dir / "toy" / "b.wav").resolve()]
    for path, (_, row) in zip(written, rows.iterrows(), strict=True):
        info = sf.info(str(path))
        assert (info.samplerate, info.subtype, info.channels) == (16000, "PCM_16", 1)
        expected = audio.load_utterance(row, "telephone")
        data, _ = sf.read(str(path), dtype="float32")
        assert data.shape == expected.shape
        assert np.max(np.abs(data - expected)) <= 1 / 32768 + 1e-6


def test_render_refuses_ids_that_leave_the_folder(rows, tmp_path):
    rows = rows.assign(utt_id=["../escape", "toy/b"])
    with pytest.raises(ManifestError, match="outside"):
        audio.render_condition(rows, "clean", tmp_path / "out")


def test_unreadable_files_say_why_in_the_operating_systems_words(tmp_path, monkeypatch):
    folder = tmp_path / "looks-like.wav"
    folder.mkdir()
    with pytest.raises(AudioError, match=r"looks-like\.wav.*unreadable audio \(Is a directory\)"):
        audio.load(folder)
    locked = tmp_path / "locked.wav"
    sf.write(locked, np.zeros(1600, dtype=np.float32), 16000)
    real_open = os.open

    def refuse(path, *args, **kwargs):  # root reads any file, so refuse as the OS would
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def system_error(*args, **kwargs):
        raise RuntimeError(f"Error opening {str(locked)!r}: System error.")

    monkeypatch.setattr(sf, "read", system_error)
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(AudioError, match=r"unreadable audio \(Permission denied\)"):
        audio.load(locked)
