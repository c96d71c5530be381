"""Choice lists of the audio and corpus stages, importable without numpy or pandas.

Commands list them in their options (and ``--help``), so they live apart from
:mod:`ssl_ser.audio` and :mod:`ssl_ser.corpora`, which take them from here.
"""

from __future__ import annotations

CONDITIONS: tuple[str, ...] = ("clean", "telephone")
TELEPHONE_SOURCES: tuple[str, ...] = ("derived", "folder")
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")
