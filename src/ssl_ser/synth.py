"""A small source-filter synthesiser of emotional speech, for the offline demo and tests.

No corpus can be downloaded here, so the demo makes its own: several synthetic
voices (glottal pulse train through formant resonators) speak vowel-syllable
"sentences" whose prosody follows what acted emotions do in the literature:
pitch level and range, tempo, loudness, jitter and voice quality (breathiness,
spectral tilt). It is a stand-in with real acoustic cues, not speech.

Every utterance is a pure function of (voice, emotion, sentence, seed): the
random generators are seeded from those values (never from Python's salted
``hash``), so the same call gives the same samples in any process.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter
from tqdm.auto import tqdm

from ssl_ser.atomic import write_file
from ssl_ser.errors import UnknownChoiceError

SAMPLE_RATE = 16000
SYLLABLE_RATE = 4.5  # syllables per second of neutral speech
PEAK = 0.3  # peak amplitude of neutral speech before the loudness change
# Reads the speaker back from the file names write_corpus() writes.
# f01_angry_s03.wav -> speaker f01
SPEAKER_PATTERN = r"^(?P<speaker>[mf]\d+)_"

# (F1, F2, F3) in Hz for a few vowels of an adult male vocal tract.
VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}
FORMANT_BANDWIDTHS: tuple[float, float, float] = (80.0, 100.0, 140.0)


@dataclass(frozen=True)
class Voice:
    """A synthetic speaker: pitch, vocal-tract scale and baseline breathiness."""

    name: str
    gender: str
    f0: float
    formant_scale: float
    breathiness: float


@dataclass(frozen=True)
class EmotionProfile:
    """Prosodic and voice-quality changes of one emotion relative to neutral speech.

    Attributes:
        pitch: f0 multiplier.
        pitch_range: intonation excursion in semitones.
        tempo: syllables-per-second multiplier.
        loudness_db: level change in dB.
        jitter: relative cycle-to-cycle f0 perturbation.
        breathiness: added aspiration noise ratio.
        tilt: spectral tilt pole (higher = darker, lax voice).
    """

    pitch: float
    pitch_range: float
    tempo: float
    loudness_db: float
    jitter: float
    breathiness: float
    tilt: float


EMOTION_PROFILES: dict[str, EmotionProfile] = {
    "neutral": EmotionProfile(1.00, 3.0, 1.00, 0.0, 0.005, 0.00, 0.90),
    "angry": EmotionProfile(1.30, 5.0, 1.20, 6.0, 0.010, 0.00, 0.65),
    "happy": EmotionProfile(1.25, 7.0, 1.15, 3.0, 0.008, 0.02, 0.80),
    "sad": EmotionProfile(0.90, 1.0, 0.75, -6.0, 0.012, 0.10, 0.96),
    "fear": EmotionProfile(1.40, 3.0, 1.30, -2.0, 0.030, 0.08, 0.90),
}
BASIC_EMOTIONS: tuple[str, ...] = ("angry", "happy", "sad", "neutral")

DEFAULT_VOICES: tuple[Voice, ...] = (
    Voice("m01", "M", 105.0, 1.00, 0.02),
    Voice("m02", "M", 125.0, 0.95, 0.04),
    Voice("m03", "M", 95.0, 1.05, 0.03),
    Voice("f01", "F", 205.0, 1.17, 0.05),
    Voice("f02", "F", 230.0, 1.20, 0.03),
    Voice("f03", "F", 190.0, 1.14, 0.06),
)


def _resonator(signal: np.ndarray, frequency: float, bandwidth: float) -> np.ndarray:
    """Second-order digital resonator (Klatt), unity gain at DC."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    c = -(r**2)
    b = 2 * r * np.cos(2 * np.pi * frequency / SAMPLE_RATE)
    a = 1 - b - c
    return lfilter([a], [1, -b, -c], signal)


def _glottal_source(f0: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Impulse train at the (jittered) instantaneous f0, one impulse per cycle."""
    perturbed = f0 * (1 + jitter * rng.standard_normal(f0.size))
    phase = np.cumsum(perturbed / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    return pulses.astype(np.float64)


def _syllable(
    voice: Voice,
    profile: EmotionProfile,
    vowel: str,
    seconds: float,
    f0_range: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """One voiced syllable: glottal source, tilt, aspiration, three formants, envelope."""
    n = int(seconds * SAMPLE_RATE)
    f0 = np.linspace(f0_range[0], f0_range[1], n)
    source = _glottal_source(f0, profile.jitter, rng)
    source = lfilter([1.0], [1.0, -profile.tilt], source)  # spectral tilt
    noise_ratio = voice.breathiness + profile.breathiness
    source = source + noise_ratio * rng.standard_normal(n) * np.abs(source).max()
    tract = source
    for formant, bandwidth in zip(VOWELS[vowel], FORMANT_BANDWIDTHS, strict=True):
        tract = _resonator(tract, formant * voice.formant_scale, bandwidth)
    envelope = np.sin(np.linspace(0, np.pi, n)) ** 0.5
    return tract * envelope


def _stable_id(text: str) -> int:
    """A process-independent integer for a name (CRC-32; Python's hash() is salted)."""
    return zlib.crc32(text.encode("utf-8"))


def utterance(
    voice: Voice, emotion: str, sentence: int, seed: int = 0, syllables: int = 6
) -> np.ndarray:
    """Synthesise one utterance of `sentence` (a vowel sequence) by `voice` in `emotion`.

    The vowel plan depends on the sentence only, so every voice and emotion says
    the same "text"; prosody varies per utterance around the emotion's profile.

    Raises:
        UnknownChoiceError: `emotion` has no profile in :data:`EMOTION_PROFILES`.
    """
    if emotion not in EMOTION_PROFILES:
        raise UnknownChoiceError("emotion", emotion, EMOTION_PROFILES, where="the synthesiser")
    profile = EMOTION_PROFILES[emotion]
    rng = np.random.default_rng([seed, sentence, _stable_id(voice.name), _stable_id(emotion)])
    plan = np.random.default_rng(sentence).choice(list(VOWELS), size=syllables)
    base = voice.f0 * profile.pitch * (1 + 0.08 * rng.standard_normal())
    rate = SYLLABLE_RATE * profile.tempo * (1 + 0.12 * rng.standard_normal())
    contour = np.linspace(1.0, -1.0, syllables + 1) + 0.3 * rng.standard_normal(syllables + 1)
    semitones = profile.pitch_range * contour / 2
    pieces = [np.zeros(int(0.08 * SAMPLE_RATE))]
    for k, vowel in enumerate(plan):
        f0_range = (base * 2 ** (semitones[k] / 12), base * 2 ** (semitones[k + 1] / 12))
        pieces.append(_syllable(voice, profile, vowel, 1 / rate, f0_range, rng))
        if k % 3 == 2:
            pieces.append(np.zeros(int(0.06 / profile.tempo * SAMPLE_RATE)))
    pieces.append(np.zeros(int(0.08 * SAMPLE_RATE)))
    wave = np.concatenate(pieces)
    loudness_db = profile.loudness_db + 4.0 * rng.standard_normal()
    wave = wave / (np.abs(wave).max() + 1e-9) * PEAK * 10 ** (loudness_db / 20)
    wave += 3e-3 * rng.standard_normal(wave.size)  # room noise
    return np.clip(wave, -1, 1).astype(np.float32)


def file_name(voice: Voice, emotion: str, sentence: int) -> str:
    """``f01_angry_s03.wav``: unique across the corpus, speaker first (see SPEAKER_PATTERN)."""
    return f"{voice.name}_{emotion}_s{sentence:02d}.wav"


def write_corpus(
    root: str | Path,
    voices: tuple[Voice, ...] = DEFAULT_VOICES,
    emotions: tuple[str, ...] = BASIC_EMOTIONS,
    sentences: int = 10,
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = True,
) -> list[Path]:
    """Write ROOT/<emotion>/<voice>_<emotion>_s<NN>.wav for every voice, emotion and sentence.

    The layout is the generic ``folder`` corpus layout; read it with
    ``ssl_ser.corpora.load("folder", root, speaker_pattern=SPEAKER_PATTERN)``.
    With ``overwrite=False`` files that exist are kept (a re-run of the demo).

    Raises:
        UnknownChoiceError: an emotion without a profile in :data:`EMOTION_PROFILES`.
    """
    import soundfile as sf

    for emotion in emotions:
        if emotion not in EMOTION_PROFILES:
            raise UnknownChoiceError("emotion", emotion, EMOTION_PROFILES, where="the synthesiser")
    root = Path(root)
    jobs = [(e, v, s) for e in emotions for v in voices for s in range(sentences)]
    paths = []
    for emotion, voice, sentence in tqdm(jobs, desc="synthesise", unit="utt", disable=not progress):
        path = root / emotion / file_name(voice, emotion, sentence)
        paths.append(path)
        if path.exists() and not overwrite:
            continue
        wave = utterance(voice, emotion, sentence, seed=seed)
        write_file(path, lambda p, w=wave: sf.write(str(p), w, SAMPLE_RATE, "PCM_16", format="WAV"))
    return paths
