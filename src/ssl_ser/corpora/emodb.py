"""EmoDB, the Berlin Database of Emotional Speech (German, 10 actors, 535 files).

Source: Burkhardt et al. (2005), http://emodb.bilderbar.info. Published layout:
``wav/03a01Fa.wav`` = speaker (2 digits), text code (3), emotion (1), take (1).
Speakers 03 10 11 12 15 are male, 08 09 13 14 16 female.
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
    name="emodb",
    title="EmoDB",
    language="deu",
    emotions={
        "W": "angry",
        "L": "boredom",
        "E": "disgust",
        "A": "fear",
        "F": "happy",
        "T": "sad",
        "N": "neutral",
    },
    layout="wav/03a01Fa.wav = speaker(2) text(3) emotion(1) take(1)",
    source="http://emodb.bilderbar.info",
    expected_files=535,
)

# 03a01Fa.wav -> speaker 03, text a01, emotion F (happy), take a
NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[A-Z])(?P<take>[a-z])$")

MALE_SPEAKERS = frozenset({"03", "10", "11", "12", "15"})
FEMALE_SPEAKERS = frozenset({"08", "09", "13", "14", "16"})

TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}


def parse(found: FoundFile) -> Utterance:
    """Fields of one EmoDB file from its name."""
    match = match_name(NAME, found, INFO)
    speaker = match["speaker"]
    if speaker in MALE_SPEAKERS:
        gender = "M"
    elif speaker in FEMALE_SPEAKERS:
        gender = "F"
    else:
        gender = ""
    text = TEXTS.get(match["text"], "")
    return named_utterance(found, match, INFO, speaker=speaker, gender=gender, text=text)


scan = folder_reader(INFO, parse)
