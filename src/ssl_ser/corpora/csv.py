"""Generic reader for a corpus described by the user's own CSV file.

ROOT is the path of a comma-separated file with at least the columns ``path``
and ``emotion``; any other manifest column may be present. Relative paths
resolve against the CSV's folder. ``emotion`` maps to the canonical vocabulary
through a user mapping, the canonical names or common synonyms. Defaults:
``corpus`` is the ``name`` option (default: the CSV's stem), ``utt_id`` is
``<corpus>/<file stem>``, ids and speakers get the ``<corpus>/`` prefix when
they lack it, ``emotion_raw`` is the ``emotion`` value, and duration and sample
rate always come from the audio file's header. Every CSV row ends up in the
manifest or in the skipped table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ssl_ser import manifest
from ssl_ser.corpora._base import (
    SPLIT_FILE_NAMES,
    CorpusInfo,
    ScanResult,
    canonical_gender,
    check_on_error,
    drop_duplicate_ids,
    finish_scan,
    nfc,
    read_header,
    resolve_root,
)
from ssl_ser.corpora.folder import check_mapping, check_name, default_name
from ssl_ser.errors import CorpusError, CorpusFileError, UnknownChoiceError
from ssl_ser.fingerprint import not_regular_reason
from ssl_ser.labels import EMOTIONS, canonical_emotion

log = logging.getLogger(__name__)

INFO = CorpusInfo(
    name="csv",
    title="user CSV",
    language="",
    emotions={e: e for e in EMOTIONS},
    layout="ROOT is a CSV with columns path, emotion (+ any manifest column); "
    "relative paths resolve against its folder",
)

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "emotion")
KNOWN_COLUMNS: frozenset[str] = frozenset(manifest.COLUMNS) | set(manifest.OPTIONAL_COLUMNS)

# line 2 of my.csv: "clips/a1.wav,Anger,spk3" -> utt_id my/a1, emotion angry, speaker my/spk3


def read_listing(csv_path: Path) -> pd.DataFrame:
    """Read the user CSV as strings, column names stripped and lowercased.

    Raises:
        CorpusError: the file cannot be read as CSV or lacks a required column.
    """
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CorpusError(f"cannot read {csv_path} as a UTF-8 CSV file: {error}") from None
    table.columns = [nfc(str(c)).strip().lower() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CorpusError(
            f"{csv_path} lacks column(s) {', '.join(missing)}; required: "
            f"{', '.join(REQUIRED_COLUMNS)}; found: {', '.join(table.columns)}"
        )
    ignored = [c for c in table.columns if c not in KNOWN_COLUMNS]
    if ignored:
        log.info("%s: ignoring column(s) %s", csv_path.name, ", ".join(ignored))
    return table


def _prefixed(value: str, corpus: str) -> str:
    """``value`` with the ``<corpus>/`` prefix, unless empty or already prefixed."""
    if not value or value.startswith(f"{corpus}/"):
        return value
    return f"{corpus}/{value}"


class _Row:
    """Turns one CSV record into a manifest row; errors name the file and line."""

    def __init__(self, record: Mapping[str, str], line: int, csv_path: Path, corpus: str):
        self.record = {k: v.strip() for k, v in record.items()}
        self.line = line
        self.csv_path = csv_path
        self.corpus = self.record.get("corpus") or corpus
        self.audio = csv_path  # replaced by the listed file once it is found

    def error(self, column: str, expected: str) -> CorpusFileError:
        """The error for a bad value in `column`, naming it and what was expected."""
        value = self.record.get(column, "")
        return CorpusFileError(
            self.audio,
            f"{column} {value!r} on line {self.line} of {self.csv_path.name}; expected {expected}",
        )

    def listed_path(self, column: str) -> Path:
        """The file named in `column`, resolved against the CSV's folder (NFC or NFD)."""
        value = self.record.get(column, "")
        if not value:
            raise self.error(column, "a file path")
        candidate = Path(value.replace("\\", "/")).expanduser()
        if not candidate.is_absolute():
            candidate = self.csv_path.parent / candidate
        try:
            found = resolve_root(candidate)
        except CorpusError:
            found = None
        special = None if found is None else not_regular_reason(found)
        if special is not None:
            where = f"(line {self.line} of {self.csv_path.name}, column {column})"
            raise CorpusFileError(found, f"{special} {where}")
        if found is None or not found.is_file():
            where = f"{self.csv_path.name} but not found (line {self.line}, column {column})"
            raise CorpusFileError(candidate, f"listed in {where}")
        return found

    def canonical(self, column: str, canonical: Callable[[str], str]) -> str:
        """A column's value in its canonical spelling (emotion, or F/M/child/empty gender)."""
        try:
            return canonical(self.record.get(column, ""))
        except UnknownChoiceError as error:
            raise self.error(column, f"one of {', '.join(map(str, error.choices))}") from None

    def split(self) -> str:
        """train, val, test or empty from the ``split`` column (dev/valid mean val)."""
        value = self.record.get("split", "").lower()
        if value and value not in SPLIT_FILE_NAMES:
            raise self.error("split", f"one of {', '.join(SPLIT_FILE_NAMES)} or empty")
        return SPLIT_FILE_NAMES.get(value, "")

    def number(self, column: str, default: float) -> float:
        """A numeric column (age, channel), `default` when empty."""
        value = self.record.get(column, "")
        if not value:
            return default
        try:
            return float(value)
        except ValueError:
            raise self.error(column, "a number or an empty cell") from None

    def channel(self) -> int:
        """Channel to read (-1 downmixes) from the ``channel`` column."""
        channel = self.number("channel", manifest.DOWNMIX)
        if channel != int(channel) or channel < manifest.DOWNMIX:
            raise self.error("channel", "an integer >= 0, or -1 to downmix")
        return int(channel)

    def telephone_path(self) -> str:
        """The ready telephone copy named in ``telephone_path``, or empty."""
        return str(self.listed_path("telephone_path")) if self.record.get("telephone_path") else ""

    def build(self, mapping: Mapping[str, str]) -> dict:
        """The manifest row (reads the audio header for duration and sample rate)."""
        self.audio = self.listed_path("path")
        if manifest.corpus_name_problem(self.corpus) is not None:
            raise self.error("corpus", "a corpus name without '/', '\\' or ','")
        emotion = self.canonical("emotion", lambda value: canonical_emotion(value, mapping))
        duration, sample_rate = read_header(self.audio)
        stem = nfc(Path(self.record["path"].replace("\\", "/")).stem)
        return {
            "utt_id": _prefixed(self.record.get("utt_id") or stem, self.corpus),
            "corpus": self.corpus,
            "path": str(self.audio),
            "speaker": _prefixed(self.record.get("speaker", ""), self.corpus),
            "gender": self.canonical("gender", canonical_gender),
            "language": self.record.get("language", ""),
            "emotion": emotion,
            "emotion_raw": self.record.get("emotion_raw") or self.record["emotion"],
            "duration": duration,
            "sample_rate": sample_rate,
            "text": self.record.get("text", ""),
            "split": self.split(),
            "age": self.number("age", float("nan")),
            "channel": self.channel(),
            "telephone_path": self.telephone_path(),
        }


def scan(
    root: str | Path,
    *,
    on_error: str = "raise",
    progress: bool = False,
    name: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> ScanResult:
    """Read the corpus listed in a user CSV into a manifest plus skipped rows.

    Args:
        root: path of the CSV file.
        on_error: ``raise`` stops at the first bad row; ``skip`` reports it.
        progress: show a progress bar with a rows/s rate.
        name: corpus name for ids and speakers (default: the CSV's stem,
            lowercased, spaces replaced by '-'); a ``corpus`` column wins per row.
        mapping: raw emotion value -> canonical emotion, consulted first.
    """
    check_on_error(on_error)
    csv_path = resolve_root(root)
    if not csv_path.is_file():
        raise CorpusError(f"{csv_path} is not a file; the csv reader expects the path of a CSV")
    corpus = check_name(name if name is not None else default_name(csv_path))
    mapping = check_mapping(mapping)
    records = read_listing(csv_path).to_dict("records")
    rows: list[dict] = []
    errors: list[CorpusFileError] = []
    lines = enumerate(records, start=2)  # line 1 holds the header
    bar = tqdm(
        lines, desc=f"read {csv_path.name}", total=len(records), unit="row", disable=not progress
    )
    for line, record in bar:
        try:
            rows.append(_Row(record, line, csv_path, corpus).build(mapping))
        except CorpusFileError as error:
            errors.append(error)
    rows, duplicates = drop_duplicate_ids(rows)
    errors.extend(duplicates)
    table = pd.DataFrame(rows, columns=[*manifest.COLUMNS, *manifest.OPTIONAL_COLUMNS])
    return finish_scan(table, errors, on_error=on_error, what=f"rows in {csv_path}")
