"""A tiny EMOVO tree: every emotion for all six actors and a few sentences, two channels."""

from __future__ import annotations

from pathlib import Path

from ssl_ser.testing import check_layout, write_tree

SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
SENTENCES = ("b1", "l3", "n5", "d2")
EMOTION_CODES = ("dis", "gio", "pau", "rab", "sor", "tri", "neu")
SAMPLE_RATE = 48000
CHANNELS = 2


def file_names() -> list[str]:
    """The file names the tree holds, e.g. dis-f1-b1.wav."""
    return [f"{e}-{s}-{t}.wav" for s in SPEAKERS for t in SENTENCES for e in EMOTION_CODES]


def make_tree(root: str | Path, layout: str = "published", seconds: float = 0.05) -> list[Path]:
    """Write the tree under `root` as two-channel WAVs (channel 1 is quieter).

    `published` puts each file in its speaker's folder (``f1/dis-f1-b1.wav``).
    """
    check_layout(layout)
    flat = layout == "flat"
    clips = [
        (Path("wav", "wav", name) if flat else Path(name.split("-")[1], name), SAMPLE_RATE)
        for name in file_names()
    ]
    return write_tree(root, clips, seconds, layout, CHANNELS)
