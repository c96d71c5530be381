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
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
# File types a manifest is read from and written to, chosen by suffix.
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", *PARQUET_SUFFIXES)


def empty() -> pd.DataFrame:
    """An empty manifest with the required columns."""
    return validate(pd.DataFrame({c: [] for c in COLUMNS}))


# Characters a corpus name cannot hold: '/' and '\\' split ids and cache folders, and ','
# splits the comma lists of --cache (a cache file lives under its corpus's name).
CORPUS_NAME_FORBIDDEN: tuple[str, ...] = ("/", "\\", ",")


def corpus_name_problem(name: str) -> str | None:
    """What is wrong with a corpus name (see CORPUS_NAME_FORBIDDEN), or None."""
    if not name or name != name.strip():
        return "it must be non-empty, without outer spaces"
    held = [char for char in CORPUS_NAME_FORBIDDEN if char in name]
    if held:
        return (
            f"it holds {', '.join(repr(c) for c in held)}; a corpus name names id prefixes "
            "and cache folders, and --cache takes a comma-separated list, so it cannot hold "
            "'/', a backslash or ','"
        )
    return None


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
    _check_unique(out["utt_id"])
    _check_corpus_names(out)
    out["duration"] = _numbers(out, "duration", "a positive number of seconds", _positive)
    out["sample_rate"] = _numbers(
        out, "sample_rate", "a positive whole number of Hz", _positive_whole
    ).astype("int64")
    if "channel" in out.columns:
        out["channel"] = out["channel"].replace("", DOWNMIX).fillna(DOWNMIX)
        out["channel"] = _numbers(
            out, "channel", f"a whole channel number >= 0, or {DOWNMIX} to downmix", _channel
        ).astype("int64")
    if "age" in out.columns:
        out["age"] = pd.to_numeric(out["age"], errors="coerce").astype(float)
    _check_vocabulary(out, "emotion", EMOTIONS)
    _check_vocabulary(out, "gender", GENDERS)
    _check_vocabulary(out, "split", SPLITS)
    ordered = list(COLUMNS) + [c for c in out.columns if c not in COLUMNS]
    return out[ordered].reset_index(drop=True)


def _positive(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values > 0)


def _positive_whole(values: np.ndarray) -> np.ndarray:
    return _positive(values) & (values == np.round(values))


def _channel(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values == np.round(values)) & (values >= DOWNMIX)


def _numbers(
    df: pd.DataFrame, column: str, expected: str, valid: Callable[[np.ndarray], np.ndarray]
) -> pd.Series:
    """`column` as float64; text, NaN, inf and values `valid` rejects refused, the first named."""
    values = pd.to_numeric(df[column], errors="coerce").astype(float)
    bad = ~valid(values.to_numpy())
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raw, utt_id = df[column].iloc[position], df["utt_id"].iloc[position]
        raise ManifestError(
            f"{column} {str(raw)!r} of {utt_id!r} is not valid; expected {expected} "
            f"({int(bad.sum())} bad row(s) in all)"
        )
    return values


def _check_corpus_names(df: pd.DataFrame) -> None:
    for name in df["corpus"].unique():
        problem = corpus_name_problem(str(name))
        if problem is not None:
            utt_id = df.loc[df["corpus"] == name, "utt_id"].iloc[0]
            raise ManifestError(f"corpus {name!r} of {utt_id!r} is not valid: {problem}")


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
    """Read a manifest from CSV (UTF-8) or parquet (chosen by suffix) and validate it.

    Raises:
        ManifestError: the file cannot be parsed (broken quoting, not UTF-8, not
            parquet), naming the file and the problem; or it breaks the schema.
    """
    from pyarrow import ArrowException

    path = Path(path)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(
                path,
                dtype={c: str for c in STRING_COLUMNS},
                keep_default_na=False,
                encoding="utf-8",
            )
    except (pd.errors.ParserError, UnicodeDecodeError, ArrowException) as error:
        detail = " ".join(str(error).split())
        raise ManifestError(f"manifest {path} cannot be read: {detail}") from error
    try:
        return validate(df)
    except ManifestError as error:
        raise ManifestError(f"manifest {path}: {error}") from error


def write(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate and write a manifest as CSV or parquet (chosen by suffix)."""
    path = Path(path)
    from ssl_ser.atomic import write_file

    df = validate(df)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return write_file(path, lambda p: df.to_parquet(p, index=False))
    return write_file(path, lambda p: df.to_csv(p, index=False))


def rows_digest(df: pd.DataFrame) -> str:
    """SHA-256 over the identity of the rows (id, emotion, duration), order-free.

    Paths are left out so that moving a corpus folder keeps its caches valid.
    """
    keyed = df[["utt_id", "emotion", "duration"]].sort_values("utt_id")
    digest = hashlib.sha256()
    for utt_id, emotion, duration in keyed.itertuples(index=False):
        digest.update(f"{utt_id}\t{emotion}\t{float(duration):.6f}\n".encode())
    return digest.hexdigest()
