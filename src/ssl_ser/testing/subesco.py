"""A small SUBESCO tree: every emotion for four speakers at 44.1 and 48 kHz.

:func:`expected_rows` lists what a reader should find, built from the same fields the
file names are made of, so tests compare a manifest against it without parsing names.
"""

from __future__ import annotations

from pathlib import Path

from ssl_ser.testing import check_layout, write_clip, written_duration

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


def expected_rows(layout: str = "published", seconds: float = 0.05) -> list[dict]:
    """One dict per file of the tree: its path under the root and its manifest values."""
    check_layout(layout)
    folder = "SUBESCO" if layout == "published" else "wav/wav"
    rows = []
    for speaker, (name, sample_rate) in SPEAKERS.items():
        for sentence in SENTENCES:
            for code, emotion in EMOTIONS.items():
                for take in TAKES:
                    stem = f"{speaker}_{name}_S_{sentence}_{code}_{take}"
                    rows.append(
                        {
                            "relpath": f"{folder}/{stem}.wav",
                            "utt_id": f"subesco/{stem}",
                            "speaker": f"subesco/{speaker}",
                            "gender": speaker[0],
                            "language": "ben",
                            "emotion": emotion,
                            "emotion_raw": code,
                            "text": "",
                            "split": "",
                            "sample_rate": sample_rate,
                            "duration": written_duration(seconds, sample_rate),
                        }
                    )
    return rows


def make_tree(root: str | Path, layout: str = "published", seconds: float = 0.05) -> list[Path]:
    """Write the tree under `root` and return the clean audio paths.

    ``published`` writes one ``SUBESCO/`` folder of files; ``flat`` writes ``wav/wav/``
    plus 8 kHz ``wav_telephone/wav_telephone/`` copies.
    """
    root = Path(root)
    flat = layout == "flat"
    paths = []
    for i, row in enumerate(expected_rows(layout, seconds)):
        rate = row["sample_rate"]
        paths.append(write_clip(root, row["relpath"], seconds, rate, seed=i, telephone=flat))
    return paths
