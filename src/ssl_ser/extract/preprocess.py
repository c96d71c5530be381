"""Per-utterance preprocessing, run in DataLoader workers: waveform -> model-ready segments.

A preprocessor is small and picklable (a feature extractor and a few numbers,
never the model), so worker processes start cheaply under any start method.
Each one applies the model's own preprocessor config to one segment at a time,
exactly as for a single utterance (per-utterance normalisation included):
padding to a batch happens later and is undone by masks.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssl_ser.errors import ConfigError
from ssl_ser.extract.batching import split_long
from ssl_ser.extract.classic import EGEMAPS_MIN_SECONDS, frame_features


@dataclass
class Segment:
    """One piece of an utterance, ready for the model.

    Attributes:
        values: model input with time on the last axis (samples, log-mel frames,
            or for classic baselines their (dim, frames) feature matrix).
        frames: valid output frames the model produces for it (0: too short).
        seconds: audio seconds it covers.
    """

    values: np.ndarray
    frames: int
    seconds: float


class Preprocessor(ABC):
    """Turns one waveform into the segments the model sees (crop or windows).

    Attributes:
        native_rate: the waveform comes at the recording's own rate (see
            :func:`ssl_ser.audio.load_utterance_native`) instead of `sample_rate`.
    """

    native_rate: bool = False

    def __init__(self, sample_rate: int, max_seconds: float | None, long_audio: str):
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.long_audio = long_audio

    def __call__(self, wave: np.ndarray) -> list[Segment]:
        """Split `wave` per the long-audio policy and prepare every piece."""
        pieces = split_long(wave, self.sample_rate, self.max_seconds, self.long_audio)
        return [self.segment(piece) for piece in pieces]

    @abstractmethod
    def segment(self, wave: np.ndarray) -> Segment:
        """Prepare one piece of audio."""

    @abstractmethod
    def min_seconds(self) -> float:
        """The shortest audio that still yields one output frame."""


def conv_output_length(samples: int, kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Frames a stack of unpadded 1-D convolutions makes from `samples` inputs (0 if too few)."""
    length = samples
    for kernel, stride in zip(kernels, strides, strict=True):
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Input samples needed for one output frame of a stack of unpadded convolutions."""
    field = 1
    for kernel, stride in reversed(list(zip(kernels, strides, strict=True))):
        field = (field - 1) * stride + kernel
    return field


class WaveformPreprocessor(Preprocessor):
    """wav2vec2-family input: the feature extractor's ``input_values`` of one segment."""

    def __init__(
        self,
        feature_extractor: Any,
        kernels: Sequence[int],
        strides: Sequence[int],
        sample_rate: int,
        max_seconds: float | None,
        long_audio: str,
    ):
        super().__init__(sample_rate, max_seconds, long_audio)
        self.feature_extractor = feature_extractor
        self.kernels = tuple(kernels)
        self.strides = tuple(strides)

    def segment(self, wave: np.ndarray) -> Segment:
        """Normalise (if the preprocessor config says so) and count output frames."""
        encoded = self.feature_extractor(wave, sampling_rate=self.sample_rate, return_tensors="np")
        values = np.asarray(encoded["input_values"][0], dtype=np.float32)
        frames = conv_output_length(values.shape[-1], self.kernels, self.strides)
        return Segment(values, frames, wave.shape[0] / self.sample_rate)

    def min_seconds(self) -> float:
        """The convolutional front end's receptive field in seconds."""
        return receptive_field(self.kernels, self.strides) / self.sample_rate


class WhisperPreprocessor(Preprocessor):
    """Whisper input: the 30 s log-mel window, or with `trim` only its real frames."""

    def __init__(
        self,
        feature_extractor: Any,
        trim: bool,
        sample_rate: int,
        max_seconds: float | None,
        long_audio: str,
    ):
        window = feature_extractor.n_samples / feature_extractor.sampling_rate
        limit = window if max_seconds is None else min(max_seconds, window)
        super().__init__(sample_rate, limit, long_audio)
        self.feature_extractor = feature_extractor
        self.trim = trim

    def segment(self, wave: np.ndarray) -> Segment:
        """Log-mel features; valid encoder frames are those covering real audio."""
        extractor = self.feature_extractor
        encoded = extractor(wave, sampling_rate=self.sample_rate, return_tensors="np")
        features = np.asarray(encoded["input_features"][0], dtype=np.float32)
        mel_frames = min(math.ceil(wave.shape[0] / extractor.hop_length), features.shape[-1])
        if self.trim:
            features = np.ascontiguousarray(features[:, :mel_frames])
        frames = whisper_frames(mel_frames)
        return Segment(features, frames, wave.shape[0] / self.sample_rate)

    def min_seconds(self) -> float:
        """One sample already covers a log-mel frame."""
        return 1.0 / self.sample_rate


def whisper_frames(mel_frames: int) -> int:
    """Encoder frames from log-mel frames (conv stride 2, padding 1, kernel 3)."""
    return (mel_frames - 1) // 2 + 1 if mel_frames > 0 else 0


class ClassicPreprocessor(Preprocessor):
    """Classic baselines computed entirely in the worker: (dim, frames) feature matrices.

    They have no memory limit, so ``window`` keeps the whole utterance in one
    piece (eGeMAPS functionals of separate windows would not combine); ``crop``
    still crops.

    Rates. eGeMAPS takes each recording at its own rate (``native_rate``):
    openSMILE defines its functionals on the signal as recorded, and its
    configuration sets its own bands in Hz. MFCC and log-mel take the audio
    resampled to `sample_rate`, so every corpus and condition shares one
    filterbank and energy scale (see :mod:`ssl_ser.extract.classic`).
    """

    def __init__(
        self,
        kind: str,
        n_mels: int,
        n_mfcc: int,
        sample_rate: int,
        max_seconds: float | None,
        long_audio: str,
    ):
        limit = max_seconds if long_audio == "crop" else None
        super().__init__(sample_rate, limit, long_audio)
        self.kind = kind
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.native_rate = kind == "egemaps"

    def __call__(self, wave: np.ndarray, sample_rate: int | None = None) -> list[Segment]:
        """Crop (per the long-audio policy) and compute the features of `wave` at its rate.

        Raises:
            ConfigError: a rate other than `sample_rate` for a feature set that
                needs the fixed rate.
        """
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        if rate != self.sample_rate and not self.native_rate:
            raise ConfigError(
                f"{self.kind} is computed at {self.sample_rate} Hz; got audio at {rate} Hz"
            )
        pieces = split_long(wave, rate, self.max_seconds, self.long_audio)
        return [self.segment(piece, rate) for piece in pieces]

    def segment(self, wave: np.ndarray, rate: int | None = None) -> Segment:
        """Frame features of `wave` at `rate` (default `sample_rate`; eGeMAPS: one 'frame').

        Zero frames (reported as too short) below :meth:`min_seconds`.

        Raises:
            ValueError: the features hold NaN or inf (never stored; the utterance is
                recorded as failed with this reason).
        """
        rate = self.sample_rate if rate is None else rate
        seconds = wave.shape[0] / rate
        if wave.shape[0] < math.ceil(self.min_seconds() * rate - 1e-6):
            return Segment(np.zeros((0, 0), dtype=np.float32), 0, seconds)
        features = frame_features(self.kind, wave, rate, self.n_mels, self.n_mfcc)
        bad = int((~np.isfinite(features)).sum())
        if bad:
            raise ValueError(
                f"{self.kind} gave {bad} non-finite value(s) for {seconds:.4f} s of audio"
            )
        return Segment(features.T, features.shape[0], seconds)

    def min_seconds(self) -> float:
        """Shortest audio that has features, in seconds.

        eGeMAPS needs one 60 ms pitch window (openSMILE fills the functionals of
        shorter audio with NaN); MFCC/log-mel zero-pad a single sample to a frame.
        """
        return EGEMAPS_MIN_SECONDS if self.kind == "egemaps" else 1.0 / self.sample_rate
