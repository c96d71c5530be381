"""Corpus readers: one module per corpus, each turning a folder into a manifest.

Each module exposes ``INFO`` (a :class:`CorpusInfo`) and
``scan(root, *, on_error="raise", progress=False, **options) -> ScanResult``.
:func:`load` and :func:`scan` here pick the module by name from the registry.
"""

from __future__ import annotations

import importlib
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

__all__ = ["CORPUS_MODULES", "CorpusInfo", "ScanResult", "info", "load", "names", "scan"]


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
