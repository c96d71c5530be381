"""A tiny EmoDB tree: every emotion code for a few speakers and texts."""

from __future__ import annotations

from pathlib import Path

from ssl_ser.testing import write_wav

SPEAKERS = ("03", "08", "10", "16")
TEXTS = ("a01", "b10")
EMOTION_CODES = ("W", "L", "E", "A", "F", "T", "N")


def file_names() -> list[str]:
    """The file names the tree holds, e.g. 03a01Fa.wav."""
    return [f"{s}{t}{e}a.wav" for s in SPEAKERS for t in TEXTS for e in EMOTION_CODES]


def make_tree(root: str | Path, layout: str = "published", seconds: float = 0.1) -> list[Path]:
    """Write the tree under `root`; `flat` uses wav/wav/ plus wav_telephone/wav_telephone/."""
    root = Path(root)
    paths = []
    for i, name in enumerate(file_names()):
        folder = root / "wav" if layout == "published" else root / "wav" / "wav"
        paths.append(write_wav(folder / name, seconds=seconds, seed=i))
        if layout == "flat":
            write_wav(root / "wav_telephone" / "wav_telephone" / name, seconds, 8000, seed=i)
    return paths
