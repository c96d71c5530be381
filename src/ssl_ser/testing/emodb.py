"""A tiny EmoDB tree: every emotion code for a few speakers and texts."""

from __future__ import annotations

from pathlib import Path

from ssl_ser.testing import check_layout, write_clip

SPEAKERS = ("03", "08", "10", "16")
TEXTS = ("a01", "b10")
EMOTION_CODES = ("W", "L", "E", "A", "F", "T", "N")


def file_names() -> list[str]:
    """The file names the tree holds, e.g. 03a01Fa.wav."""
    return [f"{s}{t}{e}a.wav" for s in SPEAKERS for t in TEXTS for e in EMOTION_CODES]


def make_tree(root: str | Path, layout: str = "published", seconds: float = 0.1) -> list[Path]:
    """Write the tree under `root`; `flat` uses wav/wav/ plus wav_telephone/wav_telephone/."""
    check_layout(layout)
    root = Path(root)
    paths = []
    folder = Path("wav") if layout == "published" else Path("wav", "wav")
    for i, name in enumerate(file_names()):
        paths.append(write_clip(root, folder / name, seconds, seed=i, telephone=layout == "flat"))
    return paths
