"""The demo's synthesiser: deterministic, readable as a folder corpus, emotions that differ."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ssl_ser import corpora, synth
from ssl_ser.errors import UnknownChoiceError

VOICES = synth.DEFAULT_VOICES[:2] + synth.DEFAULT_VOICES[3:5]  # two male, two female
FRAME = 640  # 40 ms at 16 kHz


def _digest(wave: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(wave).tobytes()).hexdigest()


def _voiced_frames(wave: np.ndarray) -> np.ndarray:
    """Frames of 40 ms whose energy is within 20 dB of the loudest frame."""
    frames = wave[: len(wave) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    energy = (frames**2).mean(axis=1)
    return frames[energy > energy.max() / 100]


def _f0(frame: np.ndarray, low: float = 60.0, high: float = 500.0) -> float:
    """Pitch of one frame from the autocorrelation peak between `low` and `high` Hz."""
    frame = frame - frame.mean()
    corr = np.correlate(frame, frame, mode="full")[len(frame) - 1 :]
    lags = np.arange(int(synth.SAMPLE_RATE / high), int(synth.SAMPLE_RATE / low))
    return synth.SAMPLE_RATE / lags[np.argmax(corr[lags])]


def _measure(emotion: str, sentences: int = 3) -> dict[str, float]:
    """Mean f0 (relative to the voice), f0 range (10th-90th percentile, semitones; robust to
    octave errors), RMS level (dB) and duration (s), averaged over voices and sentences.
    """
    f0_ratio, spread, rms, seconds = [], [], [], []
    for voice in VOICES:
        for sentence in range(sentences):
            wave = synth.utterance(voice, emotion, sentence, seed=1)
            pitches = np.array([_f0(f) for f in _voiced_frames(wave)])
            f0_ratio.append(np.median(pitches) / voice.f0)
            semitones = 12 * np.log2(pitches / np.median(pitches))
            spread.append(np.percentile(semitones, 90) - np.percentile(semitones, 10))
            rms.append(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
            seconds.append(len(wave) / synth.SAMPLE_RATE)
    return {
        "f0": float(np.mean(f0_ratio)),
        "spread": float(np.mean(spread)),
        "rms_db": float(20 * np.log10(np.mean(rms))),
        "seconds": float(np.mean(seconds)),
    }


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, float]]:
    return {emotion: _measure(emotion) for emotion in ("angry", "happy", "sad", "neutral")}


def test_same_seed_gives_identical_samples_and_other_inputs_differ():
    voice = synth.DEFAULT_VOICES[0]
    first = synth.utterance(voice, "angry", 2, seed=5)
    assert np.array_equal(first, synth.utterance(voice, "angry", 2, seed=5))
    assert first.dtype == np.float32 and np.abs(first).max() <= 1.0
    others = [
        synth.utterance(voice, "angry", 2, seed=6),
        synth.utterance(voice, "angry", 3, seed=5),
        synth.utterance(synth.DEFAULT_VOICES[1], "angry", 2, seed=5),
        synth.utterance(voice, "sad", 2, seed=5),
    ]
    for other in others:
        assert len(other) != len(first) or not np.array_equal(other, first)


def test_samples_are_identical_in_another_process():
    code = (
        "import hashlib, numpy as np; from ssl_ser import synth; "
        "w = synth.utterance(synth.DEFAULT_VOICES[4], 'happy', 7, seed=3); "
        "print(hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    here = synth.utterance(synth.DEFAULT_VOICES[4], "happy", 7, seed=3)
    assert out.stdout.strip() == _digest(here)


def test_emotions_differ_in_the_intended_direction(measured):
    angry, happy, sad, neutral = (measured[e] for e in ("angry", "happy", "sad", "neutral"))
    # pitch level: aroused emotions higher, sadness lower than neutral
    assert angry["f0"] > neutral["f0"] > sad["f0"]
    assert happy["f0"] > neutral["f0"]
    # pitch range: happy and angry speech swing most, sad speech is flattest
    assert happy["spread"] > angry["spread"] > neutral["spread"] > sad["spread"]
    # loudness: angry loudest, sad quietest (profiles differ by 12 dB)
    assert angry["rms_db"] - sad["rms_db"] > 6.0
    assert angry["rms_db"] > neutral["rms_db"] > sad["rms_db"]
    # tempo: sad speech is slowest, angry speech faster than neutral
    assert sad["seconds"] > neutral["seconds"] > angry["seconds"]


def test_f0_follows_the_voice(measured):
    low = synth.utterance(synth.DEFAULT_VOICES[2], "neutral", 0)  # m03, 95 Hz
    high = synth.utterance(synth.DEFAULT_VOICES[4], "neutral", 0)  # f02, 230 Hz
    f0_low = np.median([_f0(f) for f in _voiced_frames(low)])
    f0_high = np.median([_f0(f) for f in _voiced_frames(high)])
    assert 70 < f0_low < 130 and 170 < f0_high < 300


def test_write_corpus_reads_back_as_a_folder_corpus(tmp_path):
    paths = synth.write_corpus(tmp_path / "synth", voices=VOICES, sentences=2, seed=4)
    assert len(paths) == len(VOICES) * 4 * 2
    table = corpora.load("folder", tmp_path / "synth", speaker_pattern=synth.SPEAKER_PATTERN)
    assert len(table) == len(paths)
    assert sorted(table["speaker"].unique()) == sorted(f"synth/{v.name}" for v in VOICES)
    assert table.groupby("emotion").size().to_dict() == {e: 8 for e in synth.BASIC_EMOTIONS}
    row = table[table["utt_id"] == "synth/f01_sad_s01"].iloc[0]
    data, rate = sf.read(row["path"], dtype="float32")
    expected = synth.utterance(synth.DEFAULT_VOICES[3], "sad", 1, seed=4)
    assert rate == synth.SAMPLE_RATE
    np.testing.assert_allclose(data, expected, atol=1 / 32768 + 1e-7)


def test_unknown_emotion_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(UnknownChoiceError, match="'bored'.*neutral, angry"):
        synth.write_corpus(tmp_path, emotions=("angry", "bored"))
    with pytest.raises(UnknownChoiceError, match="'bored'"):
        synth.utterance(synth.DEFAULT_VOICES[0], "bored", 0)
