"""Shared machinery for corpus readers: find files, parse names, read headers.

A corpus module describes its corpus with a :class:`CorpusInfo` and turns one
found file into an :class:`Utterance` (raising :class:`CorpusFileError` when the
name is not what the corpus publishes); :func:`folder_reader` makes its ``scan``.
:func:`scan_folder` does the rest: it
walks the folder, reads durations from the file headers (no decoding), pairs
ready telephone copies with their clean originals, applies preset split CSVs of
flattened layouts, and accounts for every audio file: each one ends up either in
the manifest or in the skipped table with a reason.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from ssl_ser import manifest
from ssl_ser.audio import AUDIO_SUFFIXES
from ssl_ser.choices import ON_ERROR_CHOICES
from ssl_ser.errors import CorpusError, CorpusFileError, UnknownChoiceError
from ssl_ser.fingerprint import not_regular_reason
from ssl_ser.paths import existing_form, unreadable_reason

log = logging.getLogger(__name__)

TELEPHONE_FOLDER = "wav_telephone"
SPLIT_FILE_NAMES: dict[str, str] = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}
SKIPPED_COLUMNS: tuple[str, ...] = ("path", "reason")


@dataclass(frozen=True)
class CorpusInfo:
    """What a corpus is and how its files are laid out (shown by `ser corpora`)."""

    name: str
    title: str
    language: str
    emotions: Mapping[str, str]
    layout: str
    source: str = ""
    expected_files: int | None = None
    channel: int = manifest.DOWNMIX
    has_speakers: bool = True


@dataclass(frozen=True)
class FoundFile:
    """An audio file found under a corpus root, with NFC-normalised name parts."""

    path: Path
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        """File name, NFC-normalised."""
        return self.parts[-1]

    @property
    def stem(self) -> str:
        """File name without its suffix, NFC-normalised."""
        return self.name.rsplit(".", 1)[0]


@dataclass
class Utterance:
    """The fields a corpus reader derives from a file's name and the corpus metadata."""

    stem: str
    emotion: str
    emotion_raw: str
    speaker: str = ""
    gender: str = ""
    language: str = ""
    text: str = ""
    split: str = ""
    age: float | None = None


@dataclass
class ScanResult:
    """A manifest and the files that could not become rows, with reasons."""

    manifest: pd.DataFrame
    skipped: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({c: pd.Series([], dtype=str) for c in SKIPPED_COLUMNS})
    )


def nfc(text: str) -> str:
    """NFC-normalise a string, so NFD names from macOS parse like NFC ones."""
    return unicodedata.normalize("NFC", text)


def resolve_root(root: str | Path) -> Path:
    """Return the absolute corpus root, accepting the path in either normalisation.

    Raises:
        CorpusError: no folder exists under the name in NFC or NFD form.
    """
    found = existing_form(Path(root))
    if found is None:
        raise CorpusError(f"corpus root {str(root)!r} does not exist")
    return found.expanduser().resolve()


def check_on_error(on_error: str) -> None:
    """Refuse an `on_error` policy other than raise or skip."""
    if on_error not in ON_ERROR_CHOICES:
        raise UnknownChoiceError("on_error policy", on_error, ON_ERROR_CHOICES)


def find_audio(root: Path) -> tuple[list[FoundFile], list[FoundFile], list[CorpusFileError]]:
    """Find audio files recursively: (clean files, ready telephone copies, problems), sorted.

    Problems are paths under `root` that look like audio or hold it but cannot be
    scanned: a broken link or a FIFO named ``*.wav``, an unreadable folder, a folder
    link back to a folder already scanned (a loop). They go to the skip report (or
    stop a ``raise`` scan) instead of a traceback or silence.
    """
    clean: list[FoundFile] = []
    telephone: list[FoundFile] = []
    walk = _AudioWalk()
    walk.run(str(root))
    for parts in sorted(walk.found):
        found = FoundFile(path=root.joinpath(*parts), parts=tuple(nfc(p) for p in parts))
        is_telephone = any(p.lower() == TELEPHONE_FOLDER for p in found.parts[:-1])
        (telephone if is_telephone else clean).append(found)
    problems = [CorpusFileError(Path(path), reason) for path, reason in sorted(walk.problems)]
    return clean, telephone, problems


class _AudioWalk:
    """One scandir per folder; each real folder is entered once, whatever links lead to it.

    Real folders are walked first and folder links afterwards, so a file is found
    under its real path, and a link to a folder already walked (a loop such as
    ``angry/loop -> ..``, or a second way to the same folder) is reported, not followed.
    """

    def __init__(self) -> None:
        self.found: list[tuple[str, ...]] = []
        self.problems: list[tuple[str, str]] = []
        self.entered: set[tuple[int, int]] = set()
        self.links: list[tuple[os.DirEntry, tuple[str, ...]]] = []

    def run(self, root: str) -> None:
        """Walk `root`, then every folder link met on the way that leads somewhere new."""
        self.folder(root, ())
        while self.links:
            entry, prefix = self.links.pop(0)
            self.subfolder(entry, prefix)

    def folder(self, path: str, prefix: tuple[str, ...]) -> None:
        """Collect the audio files below `path` (relative parts after `prefix`)."""
        try:
            identity = os.stat(path)
            self.entered.add((identity.st_dev, identity.st_ino))
            with os.scandir(path) as scanned:
                entries = sorted(scanned, key=lambda e: e.name)
        except OSError as error:
            self.problems.append((path, f"unreadable folder ({error.strerror or error})"))
            return
        for entry in entries:
            self.entry(entry, prefix)

    def entry(self, entry: os.DirEntry, prefix: tuple[str, ...]) -> None:
        """Sort one folder entry: a folder to enter, an audio file, a problem, or neither."""
        is_audio_name = os.path.splitext(entry.name)[1].lower() in AUDIO_SUFFIXES
        try:
            if entry.is_dir():
                if entry.is_symlink():
                    self.links.append((entry, prefix))
                else:
                    self.subfolder(entry, prefix)
            elif entry.is_file():
                if is_audio_name:
                    self.found.append((*prefix, entry.name))
            elif is_audio_name:
                special = (
                    not_regular_reason(entry.path) or "not a regular audio file (a special file)"
                )
                self.problems.append((entry.path, special))
        except OSError as error:  # e.g. a link that stat cannot resolve (ELOOP)
            self.problems.append((entry.path, f"cannot be read ({error.strerror or error})"))

    def subfolder(self, entry: os.DirEntry, prefix: tuple[str, ...]) -> None:
        """Enter a folder unless its real folder was entered already (then report the link)."""
        try:
            identity = entry.stat()
        except OSError as error:
            self.problems.append((entry.path, f"cannot be read ({error.strerror or error})"))
            return
        if (identity.st_dev, identity.st_ino) in self.entered:
            target = os.path.realpath(entry.path)
            self.problems.append(
                (
                    entry.path,
                    f"folder link to {target}, which is scanned already (a loop or a "
                    "second way to the same folder); not followed",
                )
            )
            return
        self.folder(entry.path, (*prefix, entry.name))


def read_header(path: Path) -> tuple[float, int]:
    """Duration (s) and sample rate from the file header, without decoding.

    A path that is not a regular file (a FIFO listed in a user CSV would block
    the read) is refused before it is opened.

    Raises:
        CorpusFileError: the file is not a regular file, cannot be parsed as audio
            or holds no samples.
    """
    special = not_regular_reason(path)
    if special is not None:
        raise CorpusFileError(path, special)
    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises several types for bad headers
        raise CorpusFileError(path, unreadable_reason(path, error)) from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise CorpusFileError(path, "empty audio (zero samples)")
    return info.frames / info.samplerate, int(info.samplerate)


def lookup_code(code: str, table: Mapping[str, str], what: str, path: Path) -> str:
    """The value of a code of a fixed table (emotion, sentence...); the error lists the codes."""
    if code not in table:
        raise CorpusFileError(path, f"unknown {what} {code!r}; expected one of {', '.join(table)}")
    return table[code]


def named_utterance(
    found: FoundFile, match: re.Match[str], info: CorpusInfo, **fields: Any
) -> Utterance:
    """The :class:`Utterance` of `found`, its emotion the code in the name's ``emotion`` group."""
    code = match["emotion"]
    emotion = lookup_code(code, info.emotions, "emotion code", found.path)
    return Utterance(found.stem, emotion, code, **fields)


# Spellings of gender in metadata files (English, French, German initials) -> manifest value.
GENDER_WORDS: dict[str, str] = {
    "f": "F",
    "female": "F",
    "woman": "F",
    "w": "F",
    "femme": "F",
    "m": "M",
    "male": "M",
    "man": "M",
    "homme": "M",
    "h": "M",
    "child": "child",
    "c": "child",
    "enfant": "child",
    "": "",
}


def canonical_gender(value: str, where: str = "") -> str:
    """Map a gender spelling from corpus metadata (F, female, femme, w...) to F/M/child.

    Raises:
        UnknownChoiceError: the spelling is not in :data:`GENDER_WORDS`.
    """
    key = nfc(str(value)).strip().casefold()
    if key not in GENDER_WORDS:
        raise UnknownChoiceError("gender", value, [w for w in GENDER_WORDS if w], where=where)
    return GENDER_WORDS[key]


def match_name(
    pattern: re.Pattern[str], found: FoundFile, info: CorpusInfo, stem: str | None = None
) -> re.Match[str]:
    """`found`'s name (or `stem`, the name it stands for) matched by the corpus's pattern.

    Raises:
        CorpusFileError: the name does not follow the corpus naming scheme.
    """
    match = pattern.match(found.stem if stem is None else stem)
    if match is None:
        raise CorpusFileError(
            found.path, f"name does not match the {info.title} naming scheme: {info.layout}"
        )
    return match


Parser = Callable[[FoundFile], Utterance]


def folder_reader(
    info: CorpusInfo,
    parse: Callable[..., Utterance],
    metadata: Callable[[Path], Any] | None = None,
) -> Callable[..., ScanResult]:
    """A corpus module's ``scan``: `parse` every file, given what `metadata` reads under the root.

    `metadata` (a demographics table, transcripts) is read once, before the files;
    `parse` then takes it as its second argument.
    """

    def scan(root: str | Path, *, on_error: str = "raise", progress: bool = False) -> ScanResult:
        parser = parse
        if metadata is not None:
            check_on_error(on_error)  # refused before the metadata is read
            known = metadata(resolve_root(root))
            parser = functools.partial(_parse_with, parse, known)
        return scan_folder(root, info, parser, on_error=on_error, progress=progress)

    scan.__doc__ = f"Read a {info.title} folder into a manifest plus a table of skipped files."
    return scan


def _parse_with(parse: Callable[..., Utterance], known: Any, found: FoundFile) -> Utterance:
    return parse(found, known)


def scan_folder(
    root: str | Path,
    info: CorpusInfo,
    parse: Parser,
    *,
    corpus: str | None = None,
    on_error: str = "raise",
    progress: bool = False,
    path_ids: bool = False,
) -> ScanResult:
    """Turn every audio file under `root` into a manifest row or a skipped entry.

    Args:
        root: corpus folder, in its published or a flattened layout.
        info: the corpus description (language, emotion codes, channel policy).
        parse: maps one found file to an :class:`Utterance`, or raises
            :class:`CorpusFileError` saying what was expected.
        corpus: name used in ids and speakers (defaults to ``info.name``).
        on_error: ``raise`` stops at bad input naming the file; ``skip`` reports it.
        progress: show a progress bar with a files/s rate.
        path_ids: a stem found more than once gets ids from the relative path
            without suffix (``<corpus>/joy/a_1``); unique stems keep ``<corpus>/<stem>``.
    """
    check_on_error(on_error)
    root = resolve_root(root)
    corpus = corpus or info.name
    clean, telephone, problems = find_audio(root)
    if not clean and not telephone and not problems:
        raise CorpusError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {root}")
    rows: list[dict] = []
    errors: list[CorpusFileError] = list(problems)
    repeated = repeated_stems(clean) if path_ids else frozenset()
    for found in tqdm(clean, desc=f"prepare {corpus}", unit="file", disable=not progress):
        try:
            rows.append(_row(found, info, parse, corpus, repeated))
        except CorpusFileError as error:
            errors.append(error)
    rows, duplicates = drop_duplicate_ids(rows)
    errors.extend(duplicates)
    table = pd.DataFrame(rows, columns=[*manifest.COLUMNS, "age", "channel"])
    table, orphans = _attach_telephone(table, telephone, corpus)
    errors.extend(orphans)
    table = apply_split_files(root, table)
    return finish_scan(table, errors, on_error=on_error, what=f"{info.title} files under {root}")


def finish_scan(
    table: pd.DataFrame, errors: list[CorpusFileError], *, on_error: str, what: str
) -> ScanResult:
    """Raise the first error (raise mode) or list them all as skipped; validate the rest.

    Raises:
        CorpusFileError: in raise mode, when any file had a problem.
        CorpusError: no row is left (`what` names what was read).
    """
    if errors and on_error == "raise":
        first = errors[0]
        if len(errors) > 1:  # the first error, counting how many more files have problems
            more = (
                f"; {len(errors) - 1} more file(s) have problems "
                "(use --on-error skip to write them all to a report)"
            )
            first = CorpusFileError(first.path, first.reason + more)
        raise first
    skipped = pd.DataFrame(
        [(e.path, e.reason) for e in errors], columns=list(SKIPPED_COLUMNS)
    ).astype(str)
    if table.empty:
        raise CorpusError(f"no usable {what} ({len(errors)} skipped)")
    return ScanResult(manifest=manifest.validate(table), skipped=skipped)


def repeated_stems(found: list[FoundFile]) -> frozenset[str]:
    """Stems held by more than one file (``joy/a_1.wav`` and ``rage/a_1.wav``)."""
    counts = Counter(f.stem for f in found)
    return frozenset(stem for stem, count in counts.items() if count > 1)


def relative_id(parts: Sequence[str]) -> str:
    """The relative path of a file without its suffix, '/'-joined: ``joy/a_1``."""
    return "/".join([*parts[:-1], parts[-1].rsplit(".", 1)[0]])


def _row(
    found: FoundFile,
    info: CorpusInfo,
    parse: Parser,
    corpus: str,
    repeated: frozenset[str] = frozenset(),
) -> dict:
    utterance = parse(found)
    duration, sample_rate = read_header(found.path)
    name = relative_id(found.parts) if found.stem in repeated else utterance.stem
    return {
        "utt_id": f"{corpus}/{name}",
        "corpus": corpus,
        "path": str(found.path),
        "speaker": f"{corpus}/{utterance.speaker}" if utterance.speaker else "",
        "gender": utterance.gender,
        "language": utterance.language or info.language,
        "emotion": utterance.emotion,
        "emotion_raw": utterance.emotion_raw,
        "duration": duration,
        "sample_rate": sample_rate,
        "text": utterance.text,
        "split": utterance.split,
        "age": utterance.age,
        "channel": info.channel,
    }


def drop_duplicate_ids(rows: list[dict]) -> tuple[list[dict], list[CorpusFileError]]:
    """Keep the first row of each utt_id; later ones become errors naming the first."""
    seen: dict[str, str] = {}
    kept: list[dict] = []
    errors: list[CorpusFileError] = []
    for row in rows:
        first = seen.get(row["utt_id"])
        if first is None:
            seen[row["utt_id"]] = row["path"]
            kept.append(row)
        else:
            errors.append(
                CorpusFileError(row["path"], f"duplicate utterance id {row['utt_id']!r} ({first})")
            )
    return kept, errors


def _attach_telephone(
    table: pd.DataFrame, telephone: list[FoundFile], corpus: str
) -> tuple[pd.DataFrame, list[CorpusFileError]]:
    """Add `telephone_path` for ready copies; copies without an original are errors."""
    table["telephone_path"] = ""
    if not telephone:
        return table, []
    index = {utt_id: i for i, utt_id in enumerate(table["utt_id"])}
    paths = table["telephone_path"].tolist()
    errors: list[CorpusFileError] = []
    for found in telephone:
        original = [p for p in found.parts if p.lower() != TELEPHONE_FOLDER]
        by_path = index.get(f"{corpus}/{relative_id(original)}")
        position = by_path if by_path is not None else index.get(f"{corpus}/{found.stem}")
        if position is None:
            errors.append(CorpusFileError(found.path, "telephone copy without a clean original"))
        else:
            paths[position] = str(found.path)
    table["telephone_path"] = paths
    return table, errors


def apply_split_files(root: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Set `split` from train/val/test CSVs of a flattened layout, when present.

    A split CSV is any ``train.csv``, ``val.csv`` (or valid, validation, dev) or
    ``test.csv`` under the root; the column whose values name the audio files
    (by file name or stem) assigns those utterances to that split.

    Raises:
        CorpusError: a file is listed in two split files, or a split file names
            no known audio file.
    """
    split_files = [p for p in sorted(root.rglob("*.csv")) if p.stem.lower() in SPLIT_FILE_NAMES]
    if not split_files or table.empty:
        return table
    stems = table["path"].map(lambda p: nfc(Path(p).stem))
    position = {stem: i for i, stem in enumerate(stems)}
    splits = table["split"].tolist()
    assigned: dict[int, Path] = {}
    for split_file in split_files:
        split = SPLIT_FILE_NAMES[split_file.stem.lower()]
        for stem in _listed_stems(split_file, position):
            i = position[stem]
            if i in assigned and assigned[i] != split_file:
                raise CorpusError(
                    f"{stem} is listed in both {assigned[i].name} and {split_file.name}"
                )
            assigned[i] = split_file
            splits[i] = split
    table["split"] = splits
    return table


def _listed_stems(split_file: Path, known: Mapping[str, int]) -> list[str]:
    frame = pd.read_csv(split_file, dtype=str, keep_default_na=False)
    for column in frame.columns:
        stems = [nfc(Path(v.replace("\\", "/")).stem) for v in frame[column]]
        if stems and sum(s in known for s in stems) >= 0.5 * len(stems):
            return [s for s in stems if s in known]
    raise CorpusError(f"split file {split_file} has no column naming the corpus's audio files")
