"""A tiny emoUERJ tree: four emotions for four actresses and four actors."""

from __future__ import annotations

from pathlib import Path

from ssl_ser.testing import check_layout, write_tree

# w01 and m01 are different people: the gender letter is part of the speaker id.
SPEAKERS = ("w01", "w02", "w04", "m01", "m02", "m03")
EMOTION_CODES = ("a", "h", "s", "n")
TAKES = ("01", "11")
SAMPLE_RATE = 44100


def file_names() -> list[str]:
    """The file names the tree holds, e.g. w04a11.wav."""
    return [f"{s}{e}{t}.wav" for s in SPEAKERS for e in EMOTION_CODES for t in TAKES]


def make_tree(root: str | Path, layout: str = "published", seconds: float = 0.05) -> list[Path]:
    """Write the tree under `root`: one ``emoUERJ/`` folder (published) or flat ``wav/wav/``."""
    check_layout(layout)
    folder = Path("emoUERJ") if layout == "published" else Path("wav", "wav")
    clips = [(folder / name, SAMPLE_RATE) for name in file_names()]
    return write_tree(root, clips, seconds, layout)
