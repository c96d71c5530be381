"""Oréau, French acted emotional speech (434 files in nested folders).

Published layout: folders of any depth with French, non-ASCII names (``Oréau/``,
``Femmes/Émotions/``), holding files named ``10a02Ja.wav`` = speaker (2 digits),
the letter ``a``, sentence (2 digits), emotion letter (C angry, T sad, J happy,
P fear, D disgust, S surprise, N neutral), take (1). Names are matched after NFC
normalisation, so trees copied from macOS (NFD) read the same.

Known anomalies of the published release, read as the file they stand for (the
utterance id keeps the file's own stem, as for every file):

- ``07z03Sa.wav`` -> speaker 07, sentence 03, emotion S (surprise), take a;
- ``07z04Sa.wav`` -> speaker 07, sentence 04, emotion S (surprise), take a.

Both carry the letter ``z`` where the scheme has ``a``. Only these exact names
are read this way; any other name off the scheme (``07z05Sa.wav``, ``08z03Sa.wav``)
is still an error naming the file.

Speaker gender comes from an ``actors.csv`` anywhere under the root when one is
present: any delimiter, a speaker column (speaker, actor, acteur, locuteur, id...)
and a gender column (gender, sex, sexe, genre) with values such as F/M,
female/male, femme/homme or w/m. Without the file, genders stay empty.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    ScanResult,
    Utterance,
    canonical_gender,
    match_name,
    named_utterance,
    nfc,
    resolve_root,
    scan_folder,
)
from ssl_ser.errors import CorpusError, UnknownChoiceError

log = logging.getLogger(__name__)

INFO = CorpusInfo(
    name="oreau",
    title="Oréau",
    language="fra",
    emotions={
        "C": "angry",
        "T": "sad",
        "J": "happy",
        "P": "fear",
        "D": "disgust",
        "S": "surprise",
        "N": "neutral",
    },
    layout=(
        "nested folders, 10a02Ja.wav = speaker(2) 'a' sentence(2) emotion(1) take(1); "
        "optional actors.csv (speaker, gender)"
    ),
    expected_files=434,
)

# 10a02Ja.wav -> speaker 10, sentence 02, emotion J (happy), take a
NAME = re.compile(r"^(?P<speaker>\d{2})a(?P<sentence>\d{2})(?P<emotion>[A-Z])(?P<take>[a-z0-9])$")

# Stems of the published release that break the scheme -> the name each stands for.
PUBLISHED_ANOMALIES: dict[str, str] = {
    "07z03Sa": "07a03Sa",
    "07z04Sa": "07a04Sa",
}

ACTORS_FILE = "actors.csv"
# Column names (lowercased, letters and digits only) that name the speaker / the gender.
SPEAKER_COLUMN_PREFIXES = ("speaker", "actor", "acteur", "actrice", "locut", "spk")
SPEAKER_COLUMN_NAMES = ("id", "num", "numero", "numéro")
GENDER_COLUMN_PREFIXES = ("gender", "sex", "genre")
EXPECTED_COLUMNS = (
    "expected a speaker column (speaker, actor, acteur, locuteur, id) and a gender "
    "column (gender, sex, sexe, genre)"
)


def parse(found: FoundFile, genders: Mapping[str, str] | None = None) -> Utterance:
    """Fields of one Oréau file from its name (or the name a known anomaly stands for).

    `genders` maps speaker -> F/M.
    """
    match = match_name(NAME, found, INFO, PUBLISHED_ANOMALIES.get(found.stem))
    speaker = match["speaker"]
    return named_utterance(
        found, match, INFO, speaker=speaker, gender=(genders or {}).get(speaker, "")
    )


def read_actors(root: Path) -> dict[str, str]:
    """Speaker (two digits) -> gender from every ``actors.csv`` under `root`.

    Raises:
        CorpusError: a file lacks a speaker or gender column, holds a value that
            is not a gender or a speaker number, or two entries disagree.
    """
    genders: dict[str, str] = {}
    source: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if nfc(path.name).casefold() != ACTORS_FILE or not path.is_file():
            continue
        for speaker, gender in _read_actor_file(path).items():
            if genders.setdefault(speaker, gender) != gender:
                raise CorpusError(
                    f"speaker {speaker} is {genders[speaker]} in {source[speaker]} "
                    f"but {gender} in {path}"
                )
            source.setdefault(speaker, path)
    return genders


def _read_actor_file(path: Path) -> dict[str, str]:
    table = _read_csv_any_delimiter(path)
    speaker_column = _find_column(table, path, SPEAKER_COLUMN_PREFIXES, SPEAKER_COLUMN_NAMES)
    gender_column = _find_column(table, path, GENDER_COLUMN_PREFIXES, ())
    genders: dict[str, str] = {}
    for raw_speaker, raw_gender in zip(table[speaker_column], table[gender_column], strict=True):
        if not raw_speaker.strip() and not raw_gender.strip():
            continue
        speaker = _speaker_number(raw_speaker, path)
        try:
            gender = canonical_gender(raw_gender)
        except UnknownChoiceError as error:
            raise CorpusError(f"{path}: speaker {raw_speaker!r}: {error}") from None
        if genders.setdefault(speaker, gender) != gender:
            raise CorpusError(f"{path}: speaker {speaker} is listed with two genders")
    return genders


def _read_csv_any_delimiter(path: Path) -> pd.DataFrame:
    """Read a small CSV whose delimiter (, ; tab |) and encoding (UTF-8, Latin-1) vary."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CorpusError(f"cannot read {path} as CSV: {error}; {EXPECTED_COLUMNS}") from None


def _find_column(
    table: pd.DataFrame, path: Path, prefixes: tuple[str, ...], names: tuple[str, ...]
) -> str:
    for column in table.columns:
        key = re.sub(r"[\W_]", "", nfc(str(column)).casefold())
        if key.startswith(prefixes) or key in names:
            return column
    found = ", ".join(repr(str(c)) for c in table.columns)
    raise CorpusError(f"{path} has columns {found}; {EXPECTED_COLUMNS}")


def _speaker_number(value: str, path: Path) -> str:
    """The two-digit speaker of an actors.csv entry (``1``, ``01``, ``actor 1`` -> 01)."""
    digits = re.findall(r"\d+", value)
    if not digits:
        raise CorpusError(f"{path}: speaker {value!r} holds no speaker number; {EXPECTED_COLUMNS}")
    return f"{int(digits[-1]):02d}"


def scan(root: str | Path, *, on_error: str = "raise", progress: bool = False) -> ScanResult:
    """Read an Oréau folder into a manifest plus a table of skipped files."""
    genders = read_actors(resolve_root(root))
    if not genders:
        log.info("no %s under %s: Oréau genders stay empty", ACTORS_FILE, root)
    parse_with_genders = functools.partial(parse, genders=genders)
    result = scan_folder(root, INFO, parse_with_genders, on_error=on_error, progress=progress)
    unlisted = sorted(set(result.manifest.loc[result.manifest["gender"] == "", "speaker"]))
    if genders and unlisted:
        log.warning("speaker(s) %s missing from %s: gender left empty", unlisted, ACTORS_FILE)
    return result
