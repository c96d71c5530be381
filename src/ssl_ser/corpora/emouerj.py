"""emoUERJ, Brazilian Portuguese emotional speech (8 actors, 4 emotions, 377 files).

Source: State University of Rio de Janeiro (UERJ), https://zenodo.org/records/5427549.
Published naming: ``w04a11.wav`` = gender letter (w woman, m man), actor number
(01-04 within each gender), emotion letter (a angry, h happy, s sad, n neutral),
recording number. Actors chose freely among ten sentences, so file names carry
no text. Speaker ids keep the gender letter: ``w01`` and ``m01`` are two people.
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
    return named_utterance(
        found, match, INFO, speaker=match["speaker"], gender=GENDERS[match["sex"]]
    )


scan = folder_reader(INFO, parse)
