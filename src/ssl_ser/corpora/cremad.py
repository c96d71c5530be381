"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset (English, 91 actors).

Source: Cao et al. (2014), https://github.com/CheyneyComputerScience/CREMA-D. Published
layout: ``AudioWAV/1001_DFA_ANG_XX.wav`` = actor (1001-1091), sentence code (one of 12
fixed sentences), emotion code, intensity level (LO, MD, HI or XX for unspecified).
Actor sex and age come from ``VideoDemographics.csv`` (ActorID,Age,Sex,Race,Ethnicity),
found anywhere under the root. 7,442 files; the release holds one empty file,
``1076_MTI_SAD_XX.wav``, which the scan reports like any other empty file.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    Utterance,
    folder_reader,
    lookup_code,
    match_name,
    named_utterance,
)
from ssl_ser.errors import CorpusError, CorpusFileError

log = logging.getLogger(__name__)

INFO = CorpusInfo(
    name="cremad",
    title="CREMA-D",
    language="eng",
    emotions={
        "ANG": "angry",
        "DIS": "disgust",
        "FEA": "fear",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    },
    layout="AudioWAV/1001_DFA_ANG_XX.wav = actor_sentence_emotion_level (+ VideoDemographics.csv)",
    source="https://github.com/CheyneyComputerScience/CREMA-D",
    expected_files=7442,
)

# 1001_DFA_ANG_XX.wav -> actor 1001, sentence DFA ("Don't forget a jacket"), emotion ANG
# (angry), level XX (unspecified)
NAME = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$"
)

FIRST_ACTOR, LAST_ACTOR = 1001, 1091
LEVELS: tuple[str, ...] = ("LO", "MD", "HI", "XX")
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}

DEMOGRAPHICS_FILE = "VideoDemographics.csv"
DEMOGRAPHICS_COLUMNS: tuple[str, ...] = ("ActorID", "Age", "Sex")
SEXES: dict[str, str] = {"Female": "F", "Male": "M"}


@dataclass(frozen=True)
class Actor:
    """What ``VideoDemographics.csv`` says about one actor."""

    gender: str
    age: float | None


def read_demographics(path: Path) -> dict[str, Actor]:
    """Actors' gender and age from ``VideoDemographics.csv``, keyed by actor id.

    Raises:
        CorpusError: the file lacks a needed column, or holds a sex or age that
            cannot be read; the message names the file and the expected values.
    """
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in DEMOGRAPHICS_COLUMNS if c not in table.columns]
    if missing:
        raise CorpusError(
            f"{path} lacks column(s) {', '.join(missing)}; "
            f"expected columns {', '.join(DEMOGRAPHICS_COLUMNS)} (with Race, Ethnicity)"
        )
    actors: dict[str, Actor] = {}
    for actor_id, age, sex in table[list(DEMOGRAPHICS_COLUMNS)].itertuples(index=False):
        actor_id, age, sex = actor_id.strip(), age.strip(), sex.strip()
        if sex not in SEXES:
            raise CorpusError(
                f"{path}: actor {actor_id} has Sex {sex!r}; expected one of {', '.join(SEXES)}"
            )
        actors[actor_id] = Actor(gender=SEXES[sex], age=_parse_age(age, actor_id, path))
    return actors


def _parse_age(age: str, actor_id: str, path: Path) -> float | None:
    if not age:
        return None
    try:
        value = float(age)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise CorpusError(f"{path}: actor {actor_id} has Age {age!r}; expected a positive number")
    return value


def find_demographics(root: Path) -> dict[str, Actor] | None:
    """Read the ``VideoDemographics.csv`` found under `root` (the shallowest), or None."""
    found = sorted(root.rglob(DEMOGRAPHICS_FILE), key=lambda p: (len(p.parts), str(p)))
    if not found:
        log.warning(
            "%s not found under %s: CREMA-D gender and age stay empty", DEMOGRAPHICS_FILE, root
        )
        return None
    if len(found) > 1:
        log.info("several %s under %s; using %s", DEMOGRAPHICS_FILE, root, found[0])
    return read_demographics(found[0])


def parse(found: FoundFile, demographics: Mapping[str, Actor] | None = None) -> Utterance:
    """Fields of one CREMA-D file from its name and, when given, the actors' demographics."""
    match = match_name(NAME, found, INFO)
    actor = match["actor"]
    if not FIRST_ACTOR <= int(actor) <= LAST_ACTOR:
        raise CorpusFileError(
            found.path, f"actor {actor} outside the CREMA-D range {FIRST_ACTOR}-{LAST_ACTOR}"
        )
    text = lookup_code(match["sentence"], SENTENCES, "sentence code", found.path)
    lookup_code(match["level"], dict.fromkeys(LEVELS, ""), "intensity level", found.path)
    utterance = named_utterance(found, match, INFO, speaker=actor, text=text)
    if demographics is not None:
        if actor not in demographics:
            raise CorpusFileError(found.path, f"actor {actor} not in {DEMOGRAPHICS_FILE}")
        utterance.gender, utterance.age = demographics[actor].gender, demographics[actor].age
    return utterance


scan = folder_reader(INFO, parse, find_demographics)
