"""MESD, the Mexican Emotional Speech Database (Mexican Spanish, single words, 862 files).

Source: Duville et al. (2021), https://data.mendeley.com/datasets/cy34mh68j9. Published
layout: one folder of ``Anger_F_A_tarde.wav`` = emotion, voice (F female adult, M male
adult, C child), word corpus (A or B), word; the word may hold underscores
(``Happiness_M_B_buenos_dias.wav``) and accents. The corpus names no speakers.
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
from ssl_ser.errors import CorpusFileError

INFO = CorpusInfo(
    name="mesd",
    title="MESD",
    language="spa",
    emotions={
        "Anger": "angry",
        "Disgust": "disgust",
        "Fear": "fear",
        "Happiness": "happy",
        "Neutral": "neutral",
        "Sadness": "sad",
    },
    layout="Anger_F_A_tarde.wav = Emotion_voice_corpus_word (voice F, M or C; word may hold _)",
    source="https://data.mendeley.com/datasets/cy34mh68j9",
    expected_files=862,
    has_speakers=False,
)

# Happiness_M_B_buenos_dias.wav -> emotion Happiness (happy), voice M (male adult),
# word corpus B, text "buenos dias"
NAME = re.compile(
    r"^(?P<emotion>[A-Za-z]+)_(?P<voice>[A-Za-z])_(?P<corpus>[A-Za-z])_(?P<word>[^_].*)$"
)

VOICES: dict[str, str] = {"F": "F", "M": "M", "C": "child"}


def parse(found: FoundFile) -> Utterance:
    """Fields of one MESD file from its name."""
    match = match_name(NAME, found, INFO)
    emotion = lookup_emotion(match["emotion"], INFO, found.path)
    voice = match["voice"]
    if voice not in VOICES:
        raise CorpusFileError(
            found.path, f"unknown voice code {voice!r}; expected one of {', '.join(VOICES)}"
        )
    return Utterance(
        stem=found.stem,
        emotion=emotion,
        emotion_raw=match["emotion"],
        gender=VOICES[voice],
        text=match["word"].replace("_", " "),
    )


def scan(root: str | Path, *, on_error: str = "raise", progress: bool = False) -> ScanResult:
    """Read a MESD folder into a manifest plus a table of skipped files."""
    return scan_folder(root, INFO, parse, on_error=on_error, progress=progress)
