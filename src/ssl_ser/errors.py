"""Exception classes whose messages name the bad value and the valid ones.

Library code raises these for bad user input; the CLI turns them into exit code 1
with the message, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class SerError(Exception):
    """Base class of every error the toolkit raises for bad input or state."""


class UnknownChoiceError(SerError, ValueError):
    """A name that is not one of the valid choices (corpus, emotion, label set...)."""

    def __init__(self, what: str, value: object, choices: Iterable[object], where: str = ""):
        self.what = what
        self.value = value
        self.choices = list(choices)
        location = f" in {where}" if where else ""
        expected = ", ".join(str(c) for c in self.choices)
        super().__init__(f"unknown {what} {value!r}{location}; expected one of {expected}")


class CorpusFileError(SerError):
    """One audio file of a corpus that cannot become a manifest row."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason} ({path})")


class CorpusError(SerError):
    """A corpus folder that cannot be read at all (missing, empty, bad metadata)."""


class ManifestError(SerError):
    """A manifest table that breaks the schema (missing column, duplicate id...)."""


class AudioError(SerError):
    """An audio file that cannot be read or is empty."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read audio {path}: {reason}")


class ConfigError(SerError, ValueError):
    """A configuration value out of its valid range."""


class OutputError(SerError):
    """A file or folder of an output that cannot be written (a link, read-only, disk full)."""


class CacheError(SerError):
    """A feature cache that cannot be used as asked."""


class CacheKeyMismatchError(CacheError):
    """A cache file whose stored key differs from the requested one."""


class CacheLockedError(CacheError):
    """A cache file that another writer holds."""
