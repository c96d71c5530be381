"""Generic reader for any corpus sorted into one folder per emotion.

Layout: ``ROOT/<emotion>/**/*.wav``. The emotion folder's name maps to the
canonical vocabulary through a user mapping (raw folder name -> canonical
emotion), the canonical names themselves or common synonyms (``Anger``,
``sadness``...), case-insensitively. Utterance ids are ``<name>/<file stem>``;
a stem found more than once (``joy/a_1.wav``, ``rage/a_1.wav``) gives ids from the
relative path without suffix instead (``<name>/joy/a_1``, ``<name>/rage/a_1``), so
ids are unique and trees with unique stems keep the ids (and caches) they had.
Speakers come from the file stem through an optional regular expression with a
named group ``speaker``; without one, speakers stay empty.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

from ssl_ser import manifest
from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    ScanResult,
    Utterance,
    nfc,
    resolve_root,
    scan_folder,
)
from ssl_ser.errors import ConfigError, CorpusFileError, UnknownChoiceError
from ssl_ser.labels import EMOTIONS, SYNONYMS, canonical_emotion

INFO = CorpusInfo(
    name="folder",
    title="emotion-folder corpus",
    language="",
    emotions={e: e for e in EMOTIONS},
    layout="ROOT/<emotion>/**/*.wav (canonical emotion names, synonyms or a mapping)",
)

# ROOT/Anger/spk07/spk07_take3.wav -> emotion Anger (angry), id <name>/spk07_take3;
# with speaker_pattern r"^(?P<speaker>spk\d+)_" -> speaker <name>/spk07


def parse(
    found: FoundFile,
    mapping: Mapping[str, str] | None = None,
    speaker_pattern: re.Pattern[str] | None = None,
    language: str = "",
) -> Utterance:
    """Fields of one file from its emotion folder and (optionally) its stem."""
    if len(found.parts) < 2:
        raise CorpusFileError(
            found.path,
            f"file directly under the corpus root; expected ROOT/<emotion>/... "
            f"with <emotion> one of {_valid_names(mapping)}",
        )
    folder = found.parts[0]
    try:
        emotion = canonical_emotion(folder, mapping)
    except UnknownChoiceError:
        raise CorpusFileError(
            found.path,
            f"unknown emotion folder {folder!r}; expected one of {_valid_names(mapping)}",
        ) from None
    return Utterance(
        stem=found.stem,
        emotion=emotion,
        emotion_raw=folder,
        speaker=_speaker(found, speaker_pattern),
        language=language,
    )


def _speaker(found: FoundFile, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return ""
    match = pattern.search(found.stem)
    if match is None or not match["speaker"]:
        raise CorpusFileError(
            found.path, f"stem {found.stem!r} does not match speaker pattern {pattern.pattern!r}"
        )
    return match["speaker"]


def _valid_names(mapping: Mapping[str, str] | None) -> str:
    names = [*(mapping or {}), *EMOTIONS, *SYNONYMS]
    return ", ".join(dict.fromkeys(names))


def default_name(root: Path) -> str:
    """Corpus name from a folder or file name: lowercased, spaces -> '-'."""
    name = nfc(root.stem if root.is_file() else root.name)
    return "-".join(name.lower().split())


def check_name(name: str) -> str:
    """Refuse, before scanning, a corpus name that cannot prefix ids or name a cache.

    See :func:`ssl_ser.manifest.corpus_name_problem` (empty, outer spaces, slashes, commas).
    """
    problem = manifest.corpus_name_problem(name)
    if problem is not None:
        raise ConfigError(f"corpus name {name!r} is not valid: {problem}; give another with --name")
    return name


def check_mapping(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Refuse a mapping whose targets are not canonical emotions."""
    for raw, target in (mapping or {}).items():
        if str(target).strip().lower() not in EMOTIONS:
            raise UnknownChoiceError("emotion", target, EMOTIONS, where=f"mapping of {raw!r}")
    return dict(mapping or {})


def compile_speaker_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """Compile a speaker regex; it must hold a named group ``speaker``."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(
            f"speaker pattern {pattern!r} is not a regular expression: {error}"
        ) from None
    if "speaker" not in compiled.groupindex:
        raise ConfigError(f"speaker pattern {pattern!r} lacks a named group (?P<speaker>...)")
    return compiled


def scan(
    root: str | Path,
    *,
    on_error: str = "raise",
    progress: bool = False,
    name: str | None = None,
    mapping: Mapping[str, str] | None = None,
    speaker_pattern: str | None = None,
    language: str = "",
) -> ScanResult:
    """Read an emotion-folder corpus into a manifest plus a table of skipped files.

    Args:
        root: folder holding one subfolder per emotion.
        on_error: ``raise`` stops at the first bad file; ``skip`` reports it.
        progress: show a progress bar with a files/s rate.
        name: corpus name used in ids and speakers (default: the root's name,
            lowercased, spaces replaced by '-').
        mapping: raw folder name -> canonical emotion, consulted first.
        speaker_pattern: regex searched in each file stem; its group ``speaker``
            is the speaker (a stem without a match is a bad file).
        language: ISO 639-3 code written to every row.
    """
    corpus = check_name(name if name is not None else default_name(resolve_root(root)))
    parse_file = functools.partial(
        parse,
        mapping=check_mapping(mapping),
        speaker_pattern=compile_speaker_pattern(speaker_pattern),
        language=language,
    )
    return scan_folder(
        root, INFO, parse_file, corpus=corpus, on_error=on_error, progress=progress, path_ids=True
    )
