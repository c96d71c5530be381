"""Corpus readers: one module per corpus, each turning a folder into a manifest.

Each module exposes ``INFO`` (a :class:`CorpusInfo`) and
``scan(root, *, on_error="raise", progress=False, **options) -> ScanResult``.
:func:`load` and :func:`scan` here pick the module by name from the registry.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path
from types import ModuleType

import pandas as pd

from ssl_ser.corpora._base import CorpusInfo, ScanResult
from ssl_ser.errors import UnknownChoiceError

log = logging.getLogger(__name__)

# Registry: corpus name -> module under ssl_ser.corpora (imported on first use).
CORPUS_MODULES: dict[str, str] = {
    "cremad": "cremad",
    "esd": "esd",
    "subesco": "subesco",
    "emodb": "emodb",
    "mesd": "mesd",
    "emovo": "emovo",
    "oreau": "oreau",
    "emouerj": "emouerj",
    "folder": "folder",
    "csv": "csv",
}
GENERIC: tuple[str, ...] = ("folder", "csv")

# Scan keywords every reader takes; the rest of a reader's keywords are its own options.
COMMON_SCAN_KEYWORDS: tuple[str, ...] = ("on_error", "progress")

__all__ = [
    "CORPUS_MODULES",
    "CorpusInfo",
    "ScanResult",
    "info",
    "load",
    "names",
    "reader_options",
    "scan",
]


def names() -> list[str]:
    """Names of the supported corpora, the generic readers last."""
    return list(CORPUS_MODULES)


def module(name: str) -> ModuleType:
    """The reader module of corpus `name`."""
    if name not in CORPUS_MODULES:
        raise UnknownChoiceError("corpus", name, CORPUS_MODULES)
    return importlib.import_module(f"ssl_ser.corpora.{CORPUS_MODULES[name]}")


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
    result = scan(name, root, on_error=on_error, **options)
    if len(result.skipped):
        log.warning("%s: skipped %d file(s) at %s", name, len(result.skipped), root)
    return result.manifest
