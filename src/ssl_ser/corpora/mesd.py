"""MESD, the Mexican Emotional Speech Database (Mexican Spanish, single words, 862 files).

Source: Duville et al. (2021), https://data.mendeley.com/datasets/cy34mh68j9. Published
layout: one folder of ``Anger_F_A_tarde.wav`` = emotion, voice (F female adult, M male
adult, C child), word corpus (A or B), word; the word may hold underscores
(``Happiness_M_B_buenos_dias.wav``) and accents. The corpus names no speakers.
"""

from __future__ import annotations

import re

from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    Utterance,
    folder_reader,
    lookup_code,
    match_name,
    named_utterance,
)

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
    utterance = named_utterance(found, match, INFO, text=match["word"].replace("_", " "))
    utterance.gender = lookup_code(match["voice"], VOICES, "voice code", found.path)
    return utterance


scan = folder_reader(INFO, parse)
