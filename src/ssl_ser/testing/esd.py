"""A small ESD tree: a few Mandarin and English speakers, every emotion, every split.

The published layout is ``<spk>/<Emotion>/<split>/<spk>_<index>.wav`` with per-speaker
transcripts (one in GB18030, as some real Mandarin ones are); the flat layout is
``wav/wav/<spk>_<index>.wav`` plus telephone copies, without transcripts.
:func:`expected_rows` lists what a reader should find. With ``speakers=ALL_SPEAKERS``
and ``offsets=ALL_OFFSETS`` the tree has the real corpus's 35,000 names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ssl_ser.testing import check_layout, expected_row, write_tree

SAMPLE_RATE = 16000
ALL_SPEAKERS: tuple[str, ...] = tuple(f"{n:04d}" for n in range(1, 21))
SPEAKERS: tuple[str, ...] = ("0001", "0005", "0011", "0015")
FEMALE_NUMBERS = frozenset({1, 2, 3, 7, 9, 15, 16, 17, 18, 19})
# Emotion folders in the order ESD numbers them, each a block of 350 utterances, with
# the emotion name used in Mandarin transcripts.
EMOTIONS: dict[str, tuple[str, str]] = {
    "Neutral": ("neutral", "中立"),
    "Angry": ("angry", "生气"),
    "Happy": ("happy", "快乐"),
    "Sad": ("sad", "伤心"),
    "Surprise": ("surprise", "惊喜"),
}
BLOCK = 350
ALL_OFFSETS: tuple[int, ...] = tuple(range(1, BLOCK + 1))
# Positions within each emotion block: 1-20 evaluation, 21-50 test, 51-350 train.
OFFSETS: tuple[int, ...] = (1, 21, 51, 350)
# speaker -> encoding of its transcript; speakers not listed get none
TRANSCRIPTS: dict[str, str] = {"0001": "gb18030", "0005": "utf-8", "0011": "utf-8"}


def split_of(offset: int) -> tuple[str, str]:
    """(folder, manifest split) of the utterance at `offset` within its emotion block."""
    if offset <= 20:
        return "evaluation", "val"
    if offset <= 50:
        return "test", "test"
    return "train", "train"


def text_of(speaker: str, index: int) -> str:
    """The transcript line text written for one utterance (Mandarin for 0001-0010)."""
    if int(speaker) <= 10:
        return f"第{index}句，说话人{speaker}。"
    return f"Sentence {index} read by speaker {speaker}."


def expected_rows(
    layout: str = "published",
    seconds: float = 0.05,
    speakers: Sequence[str] = SPEAKERS,
    offsets: Sequence[int] = OFFSETS,
    transcripts: Mapping[str, str] = TRANSCRIPTS,
) -> list[dict]:
    """One dict per file of the tree: its path under the root and its manifest values."""
    check_layout(layout)
    rows = []
    for speaker in speakers:
        for block, (folder, (emotion, _)) in enumerate(EMOTIONS.items()):
            for offset in offsets:
                index = block * BLOCK + offset
                stem = f"{speaker}_{index:06d}"
                split_folder, split = split_of(offset)
                published = layout == "published"
                has_text = published and speaker in transcripts
                where = f"{speaker}/{folder}/{split_folder}" if published else "wav/wav"
                fields = {
                    "gender": "F" if int(speaker) in FEMALE_NUMBERS else "M",
                    "language": "cmn" if int(speaker) <= 10 else "eng",
                    "emotion": emotion,
                    "emotion_raw": folder,
                    "text": text_of(speaker, index) if has_text else "",
                    "split": split if published else "",
                }
                relpath = f"{where}/{stem}.wav"
                rows.append(expected_row("esd", relpath, speaker, SAMPLE_RATE, seconds, **fields))
    return rows


def write_transcript(
    path: str | Path, speaker: str, indices: Sequence[int], encoding: str = "utf-8"
) -> Path:
    """Write ``<spk>.txt``: one ``id<TAB>text<TAB>emotion`` line per utterance index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mandarin = int(speaker) <= 10
    lines = []
    for index in indices:
        folder = list(EMOTIONS)[(index - 1) // BLOCK]
        emotion = EMOTIONS[folder][1] if mandarin else folder
        lines.append(f"{speaker}_{index:06d}\t{text_of(speaker, index)}\t{emotion}\n")
    path.write_bytes("".join(lines).encode(encoding))
    return path


def make_tree(
    root: str | Path,
    layout: str = "published",
    seconds: float = 0.05,
    speakers: Sequence[str] = SPEAKERS,
    offsets: Sequence[int] = OFFSETS,
    transcripts: Mapping[str, str] = TRANSCRIPTS,
) -> list[Path]:
    """Write the tree under `root` and return the clean audio paths."""
    root = Path(root)
    rows = expected_rows(layout, seconds, speakers, offsets, transcripts)
    paths = write_tree(root, [(r["relpath"], SAMPLE_RATE) for r in rows], seconds, layout)
    if layout == "published":
        indices = [block * BLOCK + o for block in range(len(EMOTIONS)) for o in offsets]
        for speaker in speakers:
            if speaker in transcripts:
                path = root / speaker / f"{speaker}.txt"
                write_transcript(path, speaker, indices, transcripts[speaker])
    return paths
