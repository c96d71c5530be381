"""Classic baselines: eGeMAPS v02 functionals, MFCC and log-mel frames.

The frame features follow the usual speech front end: 25 ms periodic-Hann
windows every 10 ms (no centring; a clip shorter than one window is zero-padded
to one), a 512-point power spectrum, triangular filters equally spaced on the
HTK mel scale (``2595 log10(1 + f/700)``) from 0 Hz to the Nyquist frequency,
natural log floored at 1e-10; MFCCs are the orthonormal DCT-II of the log-mel
frame, first ``n_mfcc`` coefficients (c0 included). The extractor stores their
mean and standard deviation over frames. eGeMAPS comes from the ``opensmile``
package (feature set ``eGeMAPSv02``, functionals level): 88 utterance-level
values, stored as the ``mean`` pooling of a single layer.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ssl_ser.errors import UnknownChoiceError

WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
N_FFT = 512
LOG_FLOOR = 1e-10
EGEMAPS_DIM = 88


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
    """Triangular mel filterbank, shape (n_fft // 2 + 1, n_mels), peak 1 (unnormalised)."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bins[:, None]) / (upper - centre)[None, :]
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(wave: np.ndarray, sample_rate: int, n_mels: int) -> np.ndarray:
    """Log-mel energies, shape (frames, n_mels), float64."""
    window = int(round(WINDOW_SECONDS * sample_rate))
    hop = int(round(HOP_SECONDS * sample_rate))
    n_fft = max(N_FFT, 2 ** math.ceil(math.log2(window)))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    frames = frame_signal(wave, window, hop) * hann
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=-1)) ** 2
    return np.log(np.maximum(power @ mel_filters(sample_rate, n_fft, n_mels), LOG_FLOOR))


def mfcc(wave: np.ndarray, sample_rate: int, n_mels: int, n_mfcc: int) -> np.ndarray:
    """MFCCs, shape (frames, n_mfcc), float64."""
    from scipy.fft import dct

    return dct(log_mel(wave, sample_rate, n_mels), type=2, norm="ortho", axis=-1)[:, :n_mfcc]


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


def egemaps_names() -> list[str]:
    """Names of the 88 eGeMAPS v02 functionals, in stored order."""
    return list(_smile().feature_names)


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
