"""Benchmark of the MFCC front end on band-limited audio: train clean, test telephone.

    .venv/bin/python benchmarks/mfcc_telephone_bench.py [--sentences 10] [--seeds 0,1]
    PYTHONPATH=/tmp/librosa_pkgs .venv/bin/python benchmarks/mfcc_telephone_bench.py

It synthesises the demo's emotional-speech corpus (``ssl_ser.synth``: 6 voices,
4 emotions, SENTENCES sentences per voice and emotion, at 16 kHz), passes every
utterance through the telephone chain (``ssl_ser.audio.telephone``), and pools
MFCCs (mean and std over frames) of several front ends:

- ``v1 absolute floor``: this toolkit's feature version 1 (log floored at 1e-10);
- ``v2 top_db=80``: today's front end (floored 80 dB under the utterance's peak);
- ``librosa default`` and ``librosa, our frames`` when librosa imports (it is not
  a dependency: install it somewhere apart and put that on PYTHONPATH).

For each front end, a logistic regression (scaler fit on training rows) is
trained on clean audio of all voices but one and tested on the held-out voice's
clean and telephone audio (leave-one-speaker-out). It prints UA clean -> clean,
UA clean -> telephone and the drop, averaged over folds and seeds, plus the
mean absolute clean/telephone difference of the standardised pooled features.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssl_ser import audio, synth
from ssl_ser.extract import classic

RATE = synth.SAMPLE_RATE
N_MELS = 40
N_MFCC = 20

FrontEnd = Callable[[np.ndarray], np.ndarray]


def pooled(frames: np.ndarray) -> np.ndarray:
    """Mean and std over frames of a (frames, dim) matrix."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


def front_ends() -> dict[str, FrontEnd]:
    """Name -> waveform to (frames, n_mfcc) MFCCs."""
    ends: dict[str, FrontEnd] = {
        "v1 absolute floor": lambda w: classic.mfcc(w, RATE, N_MELS, N_MFCC, top_db=None),
        "v2 top_db=80": lambda w: classic.mfcc(w, RATE, N_MELS, N_MFCC),
    }
    try:
        import librosa
    except ImportError:
        print("librosa is not importable: its rows are left out")
        return ends
    ends["librosa default"] = lambda w: librosa.feature.mfcc(y=w, sr=RATE, n_mfcc=N_MFCC).T
    ends["librosa, our frames"] = lambda w: (
        librosa.feature.mfcc(
            y=w,
            sr=RATE,
            n_mfcc=N_MFCC,
            n_fft=512,
            win_length=400,
            hop_length=160,
            center=False,
            n_mels=N_MELS,
            htk=True,
            window="hann",
        ).T
    )
    ends["librosa, our frames, no top_db"] = lambda w: (
        librosa.feature.mfcc(
            S=librosa.power_to_db(
                librosa.feature.melspectrogram(
                    y=w,
                    sr=RATE,
                    n_fft=512,
                    win_length=400,
                    hop_length=160,
                    center=False,
                    n_mels=N_MELS,
                    htk=True,
                ),
                top_db=None,
            ),
            n_mfcc=N_MFCC,
        ).T
    )
    return ends


def corpus(sentences: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Clean waveforms, emotion labels and speaker names of the synthetic corpus."""
    waves, labels, speakers = [], [], []
    for voice in synth.DEFAULT_VOICES:
        for emotion in synth.BASIC_EMOTIONS:
            for sentence in range(sentences):
                waves.append(synth.utterance(voice, emotion, sentence, seed=seed))
                labels.append(emotion)
                speakers.append(voice.name)
    return waves, np.array(labels), np.array(speakers)


def speaker_normalised(features: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Each speaker's rows z-normalised with that speaker's own mean and std."""
    out = np.empty_like(features)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = (features[rows] - features[rows].mean(0)) / (features[rows].std(0) + 1e-9)
    return out


# espeak-ng voices (speakers) and emotion-like prosody: (pitch 0-99, words/min, amplitude).
ESPEAK_VOICES: tuple[str, ...] = ("en+m1", "en+m3", "en+m7", "en+f1", "en+f3", "en+f4")
ESPEAK_EMOTIONS: dict[str, tuple[int, int, int]] = {
    "neutral": (45, 160, 100),
    "angry": (60, 195, 190),
    "happy": (75, 180, 140),
    "sad": (30, 120, 55),
}
ESPEAK_SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "I will be back before six this evening.",
    "Please pass the salt and the fresh bread.",
    "The train leaves the station at half past nine.",
    "Nobody told me that the shop was closed.",
    "His sister finished the crossword in minutes.",
    "We should visit the castle this summer.",
    "The children were singing in the garden.",
    "It is far too cold to swim in the sea today.",
)


def espeak_corpus(sentences: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Clean waveforms of espeak-ng speech (real phonetic content) at RATE, with prosody jitter.

    Each utterance gets white noise 60 dB under full scale, as a recording room would.
    """
    rng = np.random.default_rng(seed)
    waves, labels, speakers = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "u.wav"
        for voice in ESPEAK_VOICES:
            for emotion, (pitch, speed, amplitude) in ESPEAK_EMOTIONS.items():
                for text in ESPEAK_SENTENCES[:sentences]:
                    jitter = rng.normal(size=3)
                    command = [
                        "espeak-ng",
                        "-v",
                        voice,
                        "-p",
                        str(int(np.clip(pitch + 6 * jitter[0], 0, 99))),
                        "-s",
                        str(int(speed * (1 + 0.08 * jitter[1]))),
                        "-a",
                        str(int(np.clip(amplitude * (1 + 0.15 * jitter[2]), 10, 200))),
                        "-w",
                        str(path),
                        text,
                    ]
                    subprocess.run(command, check=True)
                    data, rate = sf.read(str(path), dtype="float32")
                    wave = audio.resample(data, rate, RATE) * 0.5
                    wave = wave + 1e-3 * rng.standard_normal(wave.size).astype(np.float32)
                    waves.append(np.clip(wave, -1, 1).astype(np.float32))
                    labels.append(emotion)
                    speakers.append(voice)
    return waves, np.array(labels), np.array(speakers)


def transfer(clean: np.ndarray, phone: np.ndarray, labels, speakers) -> tuple[float, float]:
    """Leave-one-speaker-out UA on clean and telephone test audio of a clean-trained logreg."""
    ua_clean, ua_phone = [], []
    for speaker in np.unique(speakers):
        train, test = speakers != speaker, speakers == speaker
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        model.fit(clean[train], labels[train])
        ua_clean.append(balanced_accuracy_score(labels[test], model.predict(clean[test])))
        ua_phone.append(balanced_accuracy_score(labels[test], model.predict(phone[test])))
    return float(np.mean(ua_clean)), float(np.mean(ua_phone))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=10)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument(
        "--source",
        choices=("synth", "espeak"),
        default="synth",
        help="ssl_ser.synth voices, or espeak-ng speech (needs espeak-ng on PATH)",
    )
    args = parser.parse_args()
    if args.source == "espeak" and shutil.which("espeak-ng") is None:
        parser.error("espeak-ng is not on PATH (apt-get install espeak-ng)")
    make_corpus = espeak_corpus if args.source == "espeak" else corpus
    ends = front_ends()
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ends}
    for seed in (int(s) for s in args.seeds.split(",")):
        waves, labels, speakers = make_corpus(args.sentences, seed)
        phones = [audio.telephone(w, RATE) for w in waves]
        print(f"seed {seed}: {len(waves)} utterances, {len(set(speakers))} speakers")
        for name, end in ends.items():
            started = time.perf_counter()
            clean = np.stack([pooled(end(w)) for w in waves])
            phone = np.stack([pooled(end(w)) for w in phones])
            scale = clean.std(axis=0) + 1e-12
            shift = float(np.mean(np.abs((phone - clean) / scale)))
            ua_clean, ua_phone = transfer(clean, phone, labels, speakers)
            norm_clean, norm_phone = transfer(
                speaker_normalised(clean, speakers),
                speaker_normalised(phone, speakers),
                labels,
                speakers,
            )
            results[name].append((ua_clean, ua_phone, shift, norm_clean, norm_phone))
            print(f"  {name:32s} {time.perf_counter() - started:5.1f} s")
    print()
    print(
        f"{'front end':32s} {'UA clean':>9s} {'UA phone':>9s} {'drop':>7s} {'shift (sd)':>10s}"
        f" | speaker-norm: {'clean':>6s} {'phone':>6s} {'drop':>6s}"
    )
    for name, rows in results.items():
        ua_clean, ua_phone, shift, norm_clean, norm_phone = np.mean(rows, axis=0)
        print(
            f"{name:32s} {ua_clean:9.3f} {ua_phone:9.3f} {ua_clean - ua_phone:7.3f} {shift:10.2f}"
            f" | {'':14s}{norm_clean:6.3f} {norm_phone:6.3f} {norm_clean - norm_phone:6.3f}"
        )


if __name__ == "__main__":
    main()
