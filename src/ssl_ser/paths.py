"""File-system helpers that the audio reader and the corpus readers share.

They sit below both (``audio`` and ``corpora`` import them, never each other's
internals for these): finding a file whose name was stored in another Unicode
normalisation form, and saying in words why a file could not be read.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path


def existing_form(path: Path) -> Path | None:
    """`path` as given, or its NFC or NFD twin when only that exists on disk; else None."""
    for form in (None, "NFC", "NFD"):
        candidate = Path(unicodedata.normalize(form, str(path))) if form else path
        if candidate.exists():
            return candidate
    return None


def unreadable_reason(path: Path, error: Exception) -> str:
    """Why soundfile could not read `path`, in words.

    libsndfile says only "System error." when the operating system refused the
    file (permission denied, a directory, a vanished file); the OS's own reason is
    then given instead. Opening without blocking keeps a FIFO from hanging here.
    """
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.read(handle, 1)
        finally:
            os.close(handle)
    except OSError as os_error:
        return f"unreadable audio ({os_error.strerror or type(os_error).__name__})"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"unreadable audio ({reason})"
