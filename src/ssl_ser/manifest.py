"""The manifest: one row per utterance, the record shape every stage shares.

Required columns (in this order) and their meaning:

- ``utt_id``: unique across corpora, ``<corpus>/<file stem>`` (e.g. ``emodb/03a01Fa``)
- ``corpus``: corpus name from the registry (or the user's name for generic corpora)
- ``path``: absolute path of the audio file
- ``speaker``: unique across corpora (``emodb/03``); empty where the corpus has none
- ``gender``: ``F``, ``M``, ``child`` or empty
- ``language``: ISO 639-3 code
- ``emotion``: canonical emotion (see :mod:`ssl_ser.labels`)
- ``emotion_raw``: the corpus's own code
- ``duration``: seconds, from the file header
- ``sample_rate``: Hz, from the file header
- ``text``: transcript where known, else empty
- ``split``: the corpus's preset split (train/val/test) where one exists, else empty

Optional columns: ``age`` (years, NaN when unknown), ``channel`` (the channel to
read; -1 downmixes all channels), ``telephone_path`` (a ready telephone-band copy).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ssl_ser.errors import ManifestError
from ssl_ser.labels import EMOTIONS

COLUMNS: tuple[str, ...] = (
    "utt_id",
    "corpus",
    "path",
    "speaker",
    "gender",
    "language",
    "emotion",
    "emotion_raw",
    "duration",
    "sample_rate",
    "text",
    "split",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("age", "channel", "telephone_path")
STRING_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS if c not in ("duration", "sample_rate")
) + ("telephone_path",)
GENDERS: tuple[str, ...] = ("F", "M", "child", "")
SPLITS: tuple[str, ...] = ("train", "val", "test", "")
DOWNMIX = -1


def empty() -> pd.DataFrame:
    """An empty manifest with the required columns."""
    return validate(pd.DataFrame({c: [] for c in COLUMNS}))


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check a manifest against the schema and return it with normalised dtypes.

    Raises:
        ManifestError: a required column is missing, an id repeats, or a value is
            outside its vocabulary; the message names the column and the value.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest lacks column(s) {', '.join(missing)}; required: {COLUMNS}")
    out = df.copy()
    for column in STRING_COLUMNS:
        if column in out.columns:
            out[column] = out[column].fillna("").astype(str)
    out["duration"] = pd.to_numeric(out["duration"], errors="raise").astype(float)
    out["sample_rate"] = pd.to_numeric(out["sample_rate"], errors="raise").astype("int64")
    if "channel" in out.columns:
        out["channel"] = out["channel"].fillna(DOWNMIX).astype("int64")
    if "age" in out.columns:
        out["age"] = pd.to_numeric(out["age"], errors="coerce").astype(float)
    _check_unique(out["utt_id"])
    _check_vocabulary(out, "emotion", EMOTIONS)
    _check_vocabulary(out, "gender", GENDERS)
    _check_vocabulary(out, "split", SPLITS)
    if (out["duration"] <= 0).any():
        bad = out.loc[out["duration"] <= 0, "utt_id"].iloc[0]
        raise ManifestError(f"utterance {bad!r} has a non-positive duration")
    ordered = list(COLUMNS) + [c for c in out.columns if c not in COLUMNS]
    return out[ordered].reset_index(drop=True)


def _check_unique(ids: pd.Series) -> None:
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise ManifestError(
            f"duplicate utt_id {duplicated.iloc[0]!r} ({len(duplicated)} duplicate row(s))"
        )
    if (ids == "").any():
        raise ManifestError("empty utt_id in manifest")


def _check_vocabulary(df: pd.DataFrame, column: str, valid: tuple[str, ...]) -> None:
    bad = ~df[column].isin(valid)
    if bad.any():
        row = df.loc[bad].iloc[0]
        raise ManifestError(
            f"{column} {row[column]!r} of {row['utt_id']!r} is not valid; "
            f"expected one of {', '.join(repr(v) for v in valid)}"
        )


def read(path: str | Path) -> pd.DataFrame:
    """Read a manifest from CSV or parquet (chosen by suffix) and validate it."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype={c: str for c in STRING_COLUMNS}, keep_default_na=False)
    return validate(df)


def write(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate and write a manifest as CSV or parquet (chosen by suffix)."""
    path = Path(path)
    df = validate(df)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def rows_digest(df: pd.DataFrame) -> str:
    """SHA-256 over the identity of the rows (id, emotion, duration), order-free.

    Paths are left out so that moving a corpus folder keeps its caches valid.
    """
    keyed = df[["utt_id", "emotion", "duration"]].sort_values("utt_id")
    digest = hashlib.sha256()
    for utt_id, emotion, duration in keyed.itertuples(index=False):
        digest.update(f"{utt_id}\t{emotion}\t{float(duration):.6f}\n".encode())
    return digest.hexdigest()
