"""A small MESD tree: every emotion and voice for words with underscores and accents.

:func:`expected_rows` lists what a reader should find. ``unicode_form="NFD"`` writes the
accented names decomposed, as macOS does, to check that readers normalise them.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from ssl_ser.testing import check_layout, expected_row, write_tree

SAMPLE_RATE = 48000
EMOTIONS: dict[str, str] = {
    "Anger": "angry",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happiness": "happy",
    "Neutral": "neutral",
    "Sadness": "sad",
}
VOICES: dict[str, str] = {"F": "F", "M": "M", "C": "child"}
# word corpus -> (word as in the file name, its text)
WORDS: dict[str, tuple[tuple[str, str], ...]] = {
    "A": (("tarde", "tarde"), ("buenos_dias", "buenos dias")),
    "B": (("corazón", "corazón"), ("año_nuevo", "año nuevo")),
}


def expected_rows(layout: str = "published", seconds: float = 0.05) -> list[dict]:
    """One dict per file of the tree: its NFC path under the root and its manifest values."""
    check_layout(layout)
    folder = "MESD" if layout == "published" else "wav/wav"
    rows = []
    for code, emotion in EMOTIONS.items():
        for voice, gender in VOICES.items():
            for corpus, words in WORDS.items():
                for word, text in words:
                    stem = f"{code}_{voice}_{corpus}_{word}"
                    fields = {"gender": gender, "language": "spa", "text": text}
                    relpath = f"{folder}/{stem}.wav"
                    row = expected_row("mesd", relpath, "", SAMPLE_RATE, seconds, **fields)
                    rows.append(row | {"emotion": emotion, "emotion_raw": code})
    return rows


def make_tree(
    root: str | Path, layout: str = "published", seconds: float = 0.05, unicode_form: str = "NFC"
) -> list[Path]:
    """Write the tree under `root` (names in `unicode_form`); the clean audio paths."""
    rows = expected_rows(layout, seconds)
    clips = [(unicodedata.normalize(unicode_form, r["relpath"]), SAMPLE_RATE) for r in rows]
    return write_tree(root, clips, seconds, layout)
