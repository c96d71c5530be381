"""A tiny CREMA-D tree: every emotion for a few actors and sentences, with demographics.

:func:`expected_rows` lists what a reader should find, built from the same fields the
file names are made of, so tests compare a manifest against it without parsing names.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ssl_ser.testing import check_layout, expected_row, write_tree

SAMPLE_RATE = 16000
# actor -> (Sex, Age) as VideoDemographics.csv writes them; 1091 is the last actor id
ACTORS: dict[str, tuple[str, int]] = {
    "1001": ("Male", 51),
    "1002": ("Female", 21),
    "1012": ("Female", 23),
    "1091": ("Male", 29),
}
SENTENCES: dict[str, str] = {
    "DFA": "Don't forget a jacket",
    "IEO": "It's eleven o'clock",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS: dict[str, str] = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
LEVELS = ("LO", "MD", "HI", "XX")
DEMOGRAPHICS_HEADER = ("ActorID", "Age", "Sex", "Race", "Ethnicity")


def expected_rows(layout: str = "published", seconds: float = 0.05) -> list[dict]:
    """One dict per file of the tree: its path under the root and its manifest values."""
    check_layout(layout)
    folder = "AudioWAV" if layout == "published" else "wav/wav"
    rows = []
    for actor, (sex, age) in ACTORS.items():
        for sentence, text in SENTENCES.items():
            for i, (code, emotion) in enumerate(EMOTIONS.items()):
                level = "XX" if code == "NEU" else LEVELS[i % len(LEVELS)]
                stem = f"{actor}_{sentence}_{code}_{level}"
                fields = {"gender": sex[0], "age": float(age), "language": "eng", "text": text}
                relpath = f"{folder}/{stem}.wav"
                row = expected_row("cremad", relpath, actor, SAMPLE_RATE, seconds, **fields)
                rows.append(row | {"emotion": emotion, "emotion_raw": code})
    return rows


def write_demographics(path: str | Path, actors: dict[str, tuple[str, int]] = ACTORS) -> Path:
    """Write a ``VideoDemographics.csv`` in the published column layout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(DEMOGRAPHICS_HEADER)
        for actor, (sex, age) in actors.items():
            writer.writerow([actor, age, sex, "Caucasian", "Not Hispanic"])
    return path


def make_tree(
    root: str | Path, layout: str = "published", seconds: float = 0.05, demographics: bool = True
) -> list[Path]:
    """Write the tree under `root` and return the clean audio paths.

    ``published`` writes ``AudioWAV/*.wav`` and ``VideoDemographics.csv`` at the root;
    ``flat`` writes ``wav/wav/`` plus 8 kHz ``wav_telephone/wav_telephone/`` copies and
    puts the demographics one folder down, in ``meta/``.
    """
    rows = expected_rows(layout, seconds)
    paths = write_tree(root, [(r["relpath"], SAMPLE_RATE) for r in rows], seconds, layout)
    if demographics:
        folder = Path(root) if layout == "published" else Path(root, "meta")
        write_demographics(folder / "VideoDemographics.csv")
    return paths
