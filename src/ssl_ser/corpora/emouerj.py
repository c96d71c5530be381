"""emoUERJ, Brazilian Portuguese emotional speech (8 actors, 4 emotions, 377 files).

Source: State University of Rio de Janeiro (UERJ), https://zenodo.org/records/5427549.
Published naming: ``w04a11.wav`` = gender letter (w woman, m man), actor number
(01-04 within each gender), emotion letter (a angry, h happy, s sad, n neutral),
recording number. Actors chose freely among ten sentences, so file names carry
no text. Speaker ids keep the gender letter: ``w01`` and ``m01`` are two people.
"""

from __future__ import annotations

import re
from pathlib import Path

from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    ScanResult,
    Utterance,
    lookup_emotion,
    match_name,
    scan_folder,
)

INFO = CorpusInfo(
    name="emouerj",
    title="emoUERJ",
    language="por",
    emotions={"a": "angry", "h": "happy", "s": "sad", "n": "neutral"},
    layout="w04a11.wav = gender(w/m) actor(2) emotion(1) take(2)",
    source="https://zenodo.org/records/5427549",
    expected_files=377,
)

# w04a11.wav -> speaker w04 (woman), emotion a (angry), take 11
NAME = re.compile(r"^(?P<speaker>(?P<sex>[wm])\d{2})(?P<emotion>[a-z])(?P<take>\d{1,3})$")

GENDERS = {"w": "F", "m": "M"}


def parse(found: FoundFile) -> Utterance:
    """Fields of one emoUERJ file from its name."""
    match = match_name(NAME, found, INFO)
    return Utterance(
        stem=found.stem,
        emotion=lookup_emotion(match["emotion"], INFO, found.path),
        emotion_raw=match["emotion"],
        speaker=match["speaker"],
        gender=GENDERS[match["sex"]],
    )


def scan(root: str | Path, *, on_error: str = "raise", progress: bool = False) -> ScanResult:
    """Read an emoUERJ folder into a manifest plus a table of skipped files."""
    return scan_folder(root, INFO, parse, on_error=on_error, progress=progress)
