"""What ``ser predict`` reads: audio files, folders (recursively) and manifests, as rows.

Every input ends up as a row: a folder gives one row per audio file under it,
a manifest one per utterance it lists, a file itself; a path that does not
exist gives a row with its error, so that nothing asked for is lost silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ssl_ser import manifest
from ssl_ser.audio import AUDIO_SUFFIXES

COLUMNS: tuple[str, ...] = ("position", "utt_id", "path", "channel", "telephone_path", "error")


def gather(inputs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per audio file named by `inputs` (files, folders, manifests), in given order.

    Folders are searched recursively for the audio suffixes corpora use; a file
    with a manifest suffix (``.csv``, ``.parquet``) is read as a manifest.
    """
    rows: list[dict] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            rows += [_file_row(p) for p in found]
            if not found:
                rows.append(
                    _file_row(path, f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
                )
        elif path.suffix.lower() in manifest.MANIFEST_SUFFIXES and path.is_file():
            rows += _manifest_rows(path)
        else:
            rows.append(_file_row(path, None if path.is_file() else "file not found"))
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "position"])
    table.insert(0, "position", range(len(table)))  # inputs may share an id; rows never do
    return table


def _file_row(path: Path, error: str | None = None) -> dict:
    return {
        "utt_id": str(path),
        "path": str(path),
        "channel": None,  # not given: read as the model's training audio was
        "telephone_path": "",
        "error": error,
    }


def _manifest_rows(path: Path) -> list[dict]:
    table = manifest.read(path)
    given = "channel" in table
    return [
        {
            "utt_id": row["utt_id"],
            "path": row["path"],
            "channel": int(row["channel"]) if given else None,
            "telephone_path": row.get("telephone_path", "") or "",
            "error": None,
        }
        for row in table.to_dict("records")
    ]
