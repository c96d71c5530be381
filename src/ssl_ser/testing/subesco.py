"""A small SUBESCO tree: every emotion for four speakers at 44.1 and 48 kHz.

The tree also holds the published release's off-scheme file
``F_02_MONIKA_S_2_SURPRISE_3].wav`` (see :mod:`ssl_ser.corpora.subesco`).

:func:`expected_rows` lists what a reader should find, built from the same fields the
file names are made of, so tests compare a manifest against it without parsing names.
"""

from __future__ import annotations

from pathlib import Path

from ssl_ser.testing import check_layout, expected_row, write_tree

# speaker id -> (name in the file names, sample rate of that speaker's recordings)
SPEAKERS: dict[str, tuple[str, int]] = {
    "F_01": ("OISHI", 44100),
    "F_02": ("MONIKA", 48000),
    "M_01": ("RAKIB", 48000),
    "M_10": ("TANVIR", 44100),
}
EMOTIONS: dict[str, str] = {
    "ANGRY": "angry",
    "DISGUST": "disgust",
    "FEAR": "fear",
    "HAPPY": "happy",
    "NEUTRAL": "neutral",
    "SAD": "sad",
    "SURPRISE": "surprise",
}
SENTENCES = (1, 10)
TAKES = (1, 5)
# Files of the published release off the naming scheme, as the fields they are made
# of: (speaker, sentence, emotion code, take, what follows the take in the name).
ANOMALIES: tuple[tuple[str, int, str, int, str], ...] = (("F_02", 2, "SURPRISE", 3, "]"),)


def expected_rows(layout: str = "published", seconds: float = 0.05) -> list[dict]:
    """One dict per file of the tree: its path under the root and its manifest values."""
    check_layout(layout)
    folder = "SUBESCO" if layout == "published" else "wav/wav"
    rows = []
    regular = [
        (speaker, sentence, code, take, "")
        for speaker in SPEAKERS
        for sentence in SENTENCES
        for code in EMOTIONS
        for take in TAKES
    ]
    for speaker, sentence, code, take, suffix in [*regular, *ANOMALIES]:
        name, sample_rate = SPEAKERS[speaker]
        stem = f"{speaker}_{name}_S_{sentence}_{code}_{take}{suffix}"
        fields = {"gender": speaker[0], "language": "ben", "emotion": EMOTIONS[code]}
        relpath = f"{folder}/{stem}.wav"
        row = expected_row("subesco", relpath, speaker, sample_rate, seconds, **fields)
        rows.append(row | {"emotion_raw": code})
    return rows


def make_tree(root: str | Path, layout: str = "published", seconds: float = 0.05) -> list[Path]:
    """Write the tree under `root` and return the clean audio paths."""
    clips = [(row["relpath"], row["sample_rate"]) for row in expected_rows(layout, seconds)]
    return write_tree(root, clips, seconds, layout)
