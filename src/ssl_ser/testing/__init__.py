"""Helpers that write small synthetic audio for tests, benchmarks and demos.

Each corpus has a module here (``ssl_ser.testing.<corpus>``) whose ``make_tree``
writes a tiny tree of that corpus in its published (or a flattened) layout under
real file names, so that readers are tested on the names they meet in the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ssl_ser.errors import UnknownChoiceError

LAYOUTS: tuple[str, ...] = ("published", "flat")


def tone(
    seconds: float = 0.2,
    sample_rate: int = 16000,
    frequency: float = 220.0,
    channels: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """A harmonic tone with a little noise, shape (samples,) or (samples, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wave = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in (1, 2, 3))
    wave = 0.3 * wave + 0.01 * rng.standard_normal(t.size)
    if channels == 1:
        return wave.astype(np.float32)
    columns = [wave * (0.5 + 0.5 * c / channels) for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def write_wav(
    path: str | Path,
    seconds: float = 0.2,
    sample_rate: int = 16000,
    frequency: float = 220.0,
    channels: int = 1,
    seed: int = 0,
) -> Path:
    """Write a short 16-bit PCM WAV file (creating folders) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = tone(seconds, sample_rate, frequency, channels, seed)
    sf.write(str(path), data, sample_rate, subtype="PCM_16")
    return path


def write_empty_wav(path: str | Path, sample_rate: int = 16000) -> Path:
    """Write a valid WAV header with zero samples."""
    return write_wav(path, 0.0, sample_rate)


def write_garbage(path: str | Path, size: int = 64) -> Path:
    """Write bytes that are not audio under an audio file name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not audio " * (size // 10 + 1))
    return path


def check_layout(layout: str) -> None:
    """Refuse a fixture layout other than those in :data:`LAYOUTS`."""
    if layout not in LAYOUTS:
        raise UnknownChoiceError("layout", layout, LAYOUTS)


TELEPHONE_FOLDER = Path("wav_telephone", "wav_telephone")
TELEPHONE_RATE = 8000


def write_clip(
    root: Path,
    relpath: str | Path,
    seconds: float,
    sample_rate: int = 16000,
    *,
    seed: int = 0,
    channels: int = 1,
    telephone: bool = False,
) -> Path:
    """Write one corpus clip under `root`; with `telephone`, also its 8 kHz copy.

    The copy goes to ``wav_telephone/wav_telephone/`` under the same file name, the
    layout every flattened fixture tree uses. Returns the clean clip's path.
    """
    path = write_wav(root / relpath, seconds, sample_rate, channels=channels, seed=seed)
    if telephone:
        copy = root / TELEPHONE_FOLDER / path.name
        write_wav(copy, seconds, TELEPHONE_RATE, channels=channels, seed=seed)
    return path


def written_duration(seconds: float, sample_rate: int) -> float:
    """The duration of a clip of `seconds` written at `sample_rate` (whole samples)."""
    return round(seconds * sample_rate) / sample_rate


def expected_row(
    corpus: str, relpath: str, speaker: str, sample_rate: int, seconds: float, **values: Any
) -> dict:
    """The manifest values a reader should find for one clip written at `relpath`.

    `values` holds the corpus's own fields (gender, emotion...); text and split default to "".
    """
    stem = relpath.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return {
        "relpath": relpath,
        "utt_id": f"{corpus}/{stem}",
        "speaker": f"{corpus}/{speaker}" if speaker else "",
        "text": "",
        "split": "",
        **values,
        "sample_rate": sample_rate,
        "duration": written_duration(seconds, sample_rate),
    }


def write_tree(
    root: str | Path,
    clips: Iterable[tuple[str | Path, int]],
    seconds: float,
    layout: str,
    channels: int = 1,
) -> list[Path]:
    """Write each (path under `root`, sample rate) clip, seeded in order; flat: 8 kHz copies too."""
    flat = layout == "flat"
    return [
        write_clip(Path(root), relpath, seconds, rate, seed=i, channels=channels, telephone=flat)
        for i, (relpath, rate) in enumerate(clips)
    ]
