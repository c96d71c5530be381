"""Corpus readers: one module per corpus, each turning a folder into a manifest.

Each module exposes ``INFO`` (a :class:`CorpusInfo`) and
``scan(root, *, on_error="raise", progress=False, **options) -> ScanResult``.
:func:`load` and :func:`scan` here pick the module by name from the registry;
:func:`read_source` reads any data source (a corpus folder or a manifest file)
and :func:`corpus_manifests` joins several into one manifest.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from ssl_ser import manifest
from ssl_ser.corpora._base import CorpusInfo, ScanResult
from ssl_ser.errors import ConfigError, CorpusError, UnknownChoiceError

log = logging.getLogger(__name__)

# Registry: the corpus names, each the module under ssl_ser.corpora that reads it
# (imported on first use).
CORPORA: tuple[str, ...] = (
    "cremad",
    "esd",
    "subesco",
    "emodb",
    "mesd",
    "emovo",
    "oreau",
    "emouerj",
    "folder",
    "csv",
)
GENERIC: tuple[str, ...] = ("folder", "csv")

# Scan keywords every reader takes; the rest of a reader's keywords are its own options.
COMMON_SCAN_KEYWORDS: tuple[str, ...] = ("on_error", "progress")

__all__ = [
    "CORPORA",
    "CorpusInfo",
    "ScanResult",
    "corpus_manifests",
    "info",
    "load",
    "names",
    "read_source",
    "reader_options",
    "scan",
]


def names() -> list[str]:
    """Names of the supported corpora, the generic readers last."""
    return list(CORPORA)


def module(name: str) -> ModuleType:
    """The reader module of corpus `name`."""
    if name not in CORPORA:
        raise UnknownChoiceError("corpus", name, CORPORA)
    return importlib.import_module(f"ssl_ser.corpora.{name}")


def info(name: str) -> CorpusInfo:
    """Description of corpus `name` (language, emotion codes, layout)."""
    return module(name).INFO


def reader_options(name: str) -> tuple[str, ...]:
    """The options corpus `name`'s reader takes beyond the common ones, read from its ``scan``.

    ``ser prepare`` and experiment files both check what a user gives against this,
    so a reader gaining an option offers it everywhere at once.
    """
    parameters = inspect.signature(module(name).scan).parameters.values()
    return tuple(
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in COMMON_SCAN_KEYWORDS
    )


def scan(
    name: str, root: str | Path, /, *, on_error: str = "raise", progress: bool = False, **options
) -> ScanResult:
    """Read corpus `name` at `root`: the manifest plus a table of skipped files."""
    return module(name).scan(root, on_error=on_error, progress=progress, **options)


def load(name: str, root: str | Path, /, *, on_error: str = "raise", **options) -> pd.DataFrame:
    """Read corpus `name` at `root` into a validated manifest DataFrame.

    With ``on_error="skip"`` bad files are left out and a warning counts them;
    use :func:`scan` to get the list with reasons.
    """
    return read_source(root, name, on_error=on_error, **options).manifest


def read_source(
    root: str | Path,
    reader: str | None = None,
    /,
    *,
    name: str | None = None,
    on_error: str = "raise",
    progress: bool = False,
    **options: Any,
) -> ScanResult:
    """Manifest and skipped files of one source: `root` scanned by `reader`, or a manifest file.

    With `reader` None, `root` is a manifest file, and `name` keeps its rows of that
    corpus only; with a generic reader (``folder``, ``csv``), `name` names the corpus.
    Skipped files are counted in a warning.

    Raises:
        CorpusError: a manifest file without rows of corpus `name`.
        UnknownChoiceError: `reader` is not a corpus reader.
    """
    if reader is None:
        table = manifest.read(root)
        rows = table if name is None else table[table["corpus"] == name].reset_index(drop=True)
        if rows.empty and name is not None:
            present = sorted(table["corpus"].unique())
            raise CorpusError(f"manifest {root} has no rows of corpus {name!r}; it holds {present}")
        return ScanResult(rows)
    if reader in GENERIC and name is not None:
        options["name"] = name
    result = scan(reader, root, on_error=on_error, progress=progress, **options)
    if len(result.skipped):
        log.warning("%s: skipped %d file(s) at %s", name or reader, len(result.skipped), root)
    return result


def corpus_manifests(
    manifests: Sequence[str | Path], corpora: Sequence[tuple[str, str]]
) -> pd.DataFrame:
    """One validated manifest from manifest files and (NAME, ROOT) or (NAME, MANIFEST) pairs.

    A ROOT is read by the corpus reader NAME (``emodb``, ``/data/emodb``); a path
    ending in a manifest suffix is read as a manifest, whole. Files the reader
    cannot use are skipped with a warning that counts them (``ser prepare`` lists them).

    Raises:
        ConfigError: neither given, a NAME given twice, or a ROOT that does not exist.
        UnknownChoiceError: a NAME that is not a corpus reader.
    """
    parts = [manifest.read(path) for path in manifests]
    seen: set[str] = set()
    for name, root in corpora:
        if name in seen:
            raise ConfigError(f"--corpus {name} is given twice")
        seen.add(name)
        if not Path(root).exists():
            raise ConfigError(f"--corpus {name}={root}: no such corpus folder or manifest")
        is_manifest = Path(root).suffix.lower() in manifest.MANIFEST_SUFFIXES
        parts.append(read_source(root, None if is_manifest else name, on_error="skip").manifest)
    if not parts:
        raise ConfigError("give the data with --manifest FILE or --corpus NAME=ROOT")
    return manifest.validate(pd.concat(parts, ignore_index=True))
