"""Classic baselines: eGeMAPS v02 functionals, MFCC and log-mel frames.

MFCC and log-mel follow the usual speech front end: 25 ms periodic-Hann
windows every 10 ms (no centring; a clip shorter than one window is zero-padded
to one), a power spectrum of at least 512 points, triangular filters equally
spaced on the HTK mel scale (``2595 log10(1 + f/700)``) from 0 Hz to
``min(MEL_FMAX_HZ, Nyquist)`` (8 kHz), then the natural log of the band
energies with a **relative floor**: no value lies more than ``TOP_DB`` (80 dB,
18.4 nats) under the utterance's largest band energy (and none under the
absolute floor ``1e-10``). MFCCs are the orthonormal DCT-II of the log-mel
frame, first ``n_mfcc`` coefficients (c0 included). The extractor stores their
mean and standard deviation over frames.

Why a relative floor. The floor is librosa's ``power_to_db(top_db=80)``
(``librosa.feature.mfcc``'s default), in nats instead of dB. With only the
absolute floor (``log(1e-10) = -23``, the mel front end's feature version 1),
bands with no energy, such as the bands above 3.4 kHz of telephone audio or
digital silence, fall 15-25 nats under the speech bands, and through the DCT
that one constant shifts every cepstral coefficient: on EMOVO, train clean and
test telephone lost 14 UA points, against about 7 for a librosa pipeline on the
same chain. ``benchmarks/mfcc_telephone_bench.py`` measures the mismatch on
synthetic and espeak-ng speech: the mean clean/telephone shift of the pooled
MFCCs, in clean standard deviations, falls from 3.5 to 2.1 (synthetic) and from
3.2 to 2.0 (espeak-ng), where librosa's MFCCs sit (1.9-2.0). What it does to UA
depends on the data: on espeak-ng speech the clean -> telephone drop of a
logistic regression falls from 0.40 to 0.36 (librosa with these frames: 0.35);
on the synthetic voices, whose clean audio carries white noise in every band,
both floors collapse to chance, and with speaker normalisation the absolute
floor transfers better (drop 0.35 against 0.43). The relative floor is kept
because it describes the speech bands whatever the recording's level, and
agrees with the reference front end.

Why a fixed rate and mel range. MFCC and log-mel are computed on the audio
resampled to the extractor's rate (16 kHz by default), with the mel range
capped at 8 kHz: every corpus and condition then gets the same filterbank,
the same spectral resolution and the same energy scale (a power spectrum grows
with the window's length in samples), so train-on-one, test-on-another
compares like with like. Telephone audio is the chain's output resampled to that
rate; its bands above 4 kHz hold the floor.

eGeMAPS comes from the ``opensmile`` package (feature set ``eGeMAPSv02``,
functionals level): 88 utterance-level values, stored as the ``mean`` pooling
of a single layer. It is computed at the recording's **native** rate (see
:class:`ssl_ser.extract.preprocess.ClassicPreprocessor`), because openSMILE
defines its functionals on the signal as recorded: resampling a 48 kHz
recording to 16 kHz first moved 66 of EMOVO's 88 functionals by more than 10 %.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ssl_ser.errors import ConfigError, UnknownChoiceError

WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
N_FFT = 512
# Absolute floor of the band energies (librosa's amin).
LOG_FLOOR = 1e-10
# Relative floor: band energies at most this many dB under the utterance's largest one.
TOP_DB = 80.0
# Upper edge of the mel filterbank (capped at the Nyquist frequency).
MEL_FMAX_HZ = 8000.0
EGEMAPS_DIM = 88
# openSMILE fills the functionals of audio shorter than one 60 ms pitch window with NaN.
EGEMAPS_MIN_SECONDS = 0.060


def frame_signal(wave: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Overlapping frames (frames, window) of a 1-D signal, zero-padding a short one."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.shape[0] < window:
        wave = np.pad(wave, (0, window - wave.shape[0]))
    count = 1 + (wave.shape[0] - window) // hop
    return np.lib.stride_tricks.sliding_window_view(wave, window)[::hop][:count]


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular mel filterbank 0..min(8 kHz, Nyquist), shape (n_fft // 2 + 1, n_mels), peak 1."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    top = min(MEL_FMAX_HZ, sample_rate / 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(top), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bins[:, None]) / (upper - centre)[None, :]
    return np.maximum(0.0, np.minimum(rising, falling))


def mel_power(wave: np.ndarray, sample_rate: int, n_mels: int) -> np.ndarray:
    """Mel band energies (power spectrum through the filterbank), shape (frames, n_mels)."""
    window = int(round(WINDOW_SECONDS * sample_rate))
    hop = int(round(HOP_SECONDS * sample_rate))
    n_fft = max(N_FFT, 2 ** math.ceil(math.log2(window)))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    frames = frame_signal(wave, window, hop) * hann
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=-1)) ** 2
    return power @ mel_filters(sample_rate, n_fft, n_mels)


def floored_log(energies: np.ndarray, top_db: float | None = TOP_DB) -> np.ndarray:
    """Natural log of energies, floored at LOG_FLOOR and `top_db` dB under their maximum.

    ``top_db=None`` keeps only the absolute floor (the front end of feature version 1).
    """
    logs = np.log(np.maximum(energies, LOG_FLOOR))
    if top_db is None:
        return logs
    if not top_db >= 0:
        raise ConfigError(f"top_db {top_db!r} must be >= 0 (or None for no relative floor)")
    return np.maximum(logs, logs.max(initial=math.log(LOG_FLOOR)) - top_db * math.log(10) / 10)


def log_mel(
    wave: np.ndarray, sample_rate: int, n_mels: int, top_db: float | None = TOP_DB
) -> np.ndarray:
    """Log-mel energies, shape (frames, n_mels), float64 (see the module docstring)."""
    return floored_log(mel_power(wave, sample_rate, n_mels), top_db)


def mfcc(
    wave: np.ndarray, sample_rate: int, n_mels: int, n_mfcc: int, top_db: float | None = TOP_DB
) -> np.ndarray:
    """MFCCs, shape (frames, n_mfcc), float64: the DCT-II of :func:`log_mel`."""
    from scipy.fft import dct

    logs = log_mel(wave, sample_rate, n_mels, top_db)
    return dct(logs, type=2, norm="ortho", axis=-1)[:, :n_mfcc]


@functools.lru_cache(maxsize=1)
def _smile() -> Any:
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def egemaps(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The 88 eGeMAPS v02 functionals of one utterance, float64.

    The openSMILE engine is created on first use in each process, so DataLoader
    workers build their own.
    """
    values = _smile().process_signal(np.asarray(wave, dtype=np.float32), sample_rate)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def frame_features(
    kind: str, wave: np.ndarray, sample_rate: int, n_mels: int, n_mfcc: int
) -> np.ndarray:
    """Frame-level (frames, dim) features of a classic baseline; eGeMAPS gives one row."""
    if kind == "mfcc":
        return mfcc(wave, sample_rate, n_mels, n_mfcc)
    if kind == "logmel":
        return log_mel(wave, sample_rate, n_mels)
    if kind == "egemaps":
        return egemaps(wave, sample_rate)[None, :]
    raise UnknownChoiceError("classic feature set", kind, ("egemaps", "mfcc", "logmel"))
