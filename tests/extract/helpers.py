"""Helpers of the extraction tests: tiny models of every family, toy manifests.

Models are randomly initialised, saved to folders and loaded back by path
through the same code path a hub id takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser import manifest
from ssl_ser.testing import write_wav, written_duration
from ssl_ser.testing.models import (  # noqa: F401 (re-exported for the tests)
    FAMILIES,
    WAVEFORM_FAMILIES,
    save_waveform_model,
    save_whisper_model,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_manifest(
    folder: Path, seconds: list[float], corpus: str = "toy", sample_rate: int = 16000
) -> pd.DataFrame:
    """WAV files of the given lengths and a valid manifest of them."""
    rows = []
    for i, duration in enumerate(seconds):
        path = write_wav(
            folder / corpus / f"utt{i:03d}.wav",
            seconds=duration,
            sample_rate=sample_rate,
            frequency=120.0 + 17 * i,
            seed=i,
        )
        rows.append(
            {
                "utt_id": f"{corpus}/utt{i:03d}",
                "corpus": corpus,
                "path": str(path),
                "speaker": f"{corpus}/s{i % 3}",
                "gender": "",
                "language": "deu",
                "emotion": "neutral",
                "emotion_raw": "N",
                "duration": written_duration(duration, sample_rate),
                "sample_rate": sample_rate,
                "text": "",
                "split": "",
            }
        )
    return manifest.validate(pd.DataFrame(rows))


def lengths(count: int, low: float = 0.3, high: float = 1.5, seed: int = 0) -> list[float]:
    """Random utterance lengths in seconds."""
    rng = np.random.default_rng(seed)
    return [float(x) for x in np.round(rng.uniform(low, high, count), 3)]
