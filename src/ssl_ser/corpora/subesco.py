"""SUBESCO, the SUST Bangla Emotional Speech Corpus (Bangla, 20 speakers, 7,000 files).

Source: Sultana et al. (2021), https://doi.org/10.1371/journal.pone.0250173. Published layout:
one folder of ``F_01_OISHI_S_1_ANGRY_1.wav`` = gender (F/M), speaker number, speaker
name, ``S``, sentence number, emotion, take. The speaker id is gender plus number
(``F_01``). Recordings come at more than one sample rate (44.1 and 48 kHz).

Known anomalies of the published release, read as the file they stand for (the
utterance id keeps the file's own stem, as for every file):

- ``F_02_MONIKA_S_2_SURPRISE_3].wav`` (a stray ``]`` after the take) -> speaker
  F_02 (MONIKA), sentence 2, emotion SURPRISE (surprise), take 3.

Only these exact names are read this way; any other name off the scheme, even
one that differs from them by a character, is still an error naming the file.
"""

from __future__ import annotations

import re

from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    Utterance,
    folder_reader,
    match_name,
    named_utterance,
)

INFO = CorpusInfo(
    name="subesco",
    title="SUBESCO",
    language="ben",
    emotions={
        "ANGRY": "angry",
        "DISGUST": "disgust",
        "FEAR": "fear",
        "HAPPY": "happy",
        "NEUTRAL": "neutral",
        "SAD": "sad",
        "SURPRISE": "surprise",
    },
    layout="F_01_OISHI_S_1_ANGRY_1.wav = gender_number_name_S_sentence_EMOTION_take",
    source="https://doi.org/10.1371/journal.pone.0250173",
    expected_files=7000,
)

# F_01_OISHI_S_1_ANGRY_1.wav -> speaker F_01 (female, named OISHI), sentence 1,
# emotion ANGRY (angry), take 1
NAME = re.compile(
    r"^(?P<speaker>(?P<gender>[FM])_(?P<number>\d{2}))_(?P<name>[A-Za-z]+)"
    r"_S_(?P<sentence>\d{1,2})_(?P<emotion>[A-Za-z]+)_(?P<take>\d{1,2})$"
)


# Stems of the published release that break the scheme -> the name each stands for.
PUBLISHED_ANOMALIES: dict[str, str] = {
    "F_02_MONIKA_S_2_SURPRISE_3]": "F_02_MONIKA_S_2_SURPRISE_3",
}


def parse(found: FoundFile) -> Utterance:
    """Fields of one SUBESCO file from its name (or the name a known anomaly stands for)."""
    match = match_name(NAME, found, INFO, PUBLISHED_ANOMALIES.get(found.stem))
    return named_utterance(found, match, INFO, speaker=match["speaker"], gender=match["gender"])


scan = folder_reader(INFO, parse)
