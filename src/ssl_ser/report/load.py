"""Read results tables (and stored predictions) and bring them to one tidy shape.

The report reads only what ``ser classify`` writes into its output folder: the
results table (one row per extractor, train/test corpus and condition, layer,
pooling, classifier, split and fold) and the per-utterance test predictions.
Columns the report needs but a table lacks are derived here, in one place:

- ``train_corpus``/``test_corpus`` and ``train_condition``/``test_condition``
  fall back to ``corpus`` and ``condition`` (mono-corpus runs);
- ``split_type``: "speaker-independent", "speaker-dependent (random utterance
  split)" or "speaker-dependent (speakers shared by train and test)", from the
  ``speaker_independent`` column when present, else from the split name;
- ``labels``, ``speaker_norm`` and ``search`` (part of a cell's identity in
  ``ser classify`` output) default to one value when absent;
- ``classic``: whether the extractor is a one-layer classic baseline (eGeMAPS,
  MFCC, log-mel) rather than a layered SSL model;
- ``untrained``: whether the extractor's model has random weights (a flag
  column or cache-key field, or ``untrained``/``random`` in the last part of its
  model id).

Predictions are matched to result rows through their ``cell_id`` (a pooled
multi-corpus test fold is narrowed to one corpus through the ``corpus`` column).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser.errors import ConfigError

log = logging.getLogger(__name__)

RESULTS_STEMS: tuple[str, ...] = ("results",)
PREDICTIONS_STEMS: tuple[str, ...] = ("predictions",)
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv")

# What identifies one cell of a sweep (its folds are the rows of the cell).
SETTING: tuple[str, ...] = (
    "extractor",
    "train_corpus",
    "train_condition",
    "test_corpus",
    "test_condition",
    "split",
    "labels",
)
CONFIG: tuple[str, ...] = ("layer", "pooling", "classifier", "speaker_norm", "search")
# Identity columns that older or hand-made tables may lack, and their value then.
DEFAULTS: dict[str, str] = {
    "fold": "0",
    "pooling": "mean",
    "labels": "",
    "speaker_norm": "False",
    "search": "False",
}
CELL: tuple[str, ...] = SETTING + CONFIG
METRICS: tuple[str, ...] = ("ua", "wa", "macro_f1")
REQUIRED: tuple[str, ...] = ("extractor", "layer", "classifier", "split", "ua")

CLASSIC_EXTRACTORS: tuple[str, ...] = ("egemaps", "mfcc", "logmel")
SPEAKER_INDEPENDENT = "speaker-independent"
SPEAKER_DEPENDENT = "speaker-dependent (random utterance split)"
SPEAKERS_SHARED = "speaker-dependent (speakers shared by train and test)"
PRESET_UNKNOWN = "preset split (speaker overlap not recorded)"
SPEAKER_DEPENDENT_SPLITS: tuple[str, ...] = ("random",)
# ``random-wav2vec2``, ``tiny_untrained``: a word of the model's own name, not of its folder.
UNTRAINED_NAME = re.compile(r"(?:^|[^a-z])(?:untrained|random)(?:[^a-z]|$)", re.IGNORECASE)
UNTRAINED_FIELDS: tuple[str, ...] = ("untrained", "random_init", "random_weights")
MODEL_FIELDS: tuple[str, ...] = ("model", "model_id")
CACHE_KEY_COLUMNS: tuple[str, ...] = ("cache_keys", "cache_key")
TRUE_COLUMNS: tuple[str, ...] = ("label", "y_true", "true", "emotion")
PRED_COLUMNS: tuple[str, ...] = ("pred", "prediction", "y_pred", "predicted")
# What the report reads of the predictions (not the per-class probabilities).
PREDICTION_COLUMNS: tuple[str, ...] = (
    "cell_id",
    "corpus",
    "fold",
    *CELL,
    *TRUE_COLUMNS,
    *PRED_COLUMNS,
)


@dataclass
class Results:
    """The normalised results table and, when stored, the per-utterance predictions."""

    table: pd.DataFrame
    predictions: pd.DataFrame | None
    sources: list[Path]

    @property
    def classes(self) -> list[str]:
        """Class names, from the ``recall_<class>`` columns (in table order)."""
        return [c.removeprefix("recall_") for c in self.table.columns if c.startswith("recall_")]


def find_table(folder: Path, stems: Sequence[str]) -> Path | None:
    """The first ``<stem>.parquet`` or ``<stem>.csv`` in `folder`, or None."""
    for stem in stems:
        for suffix in TABLE_SUFFIXES:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def read_table(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A parquet or CSV table (layer and fold kept as text), optionally only some columns.

    Args:
        path: the ``.parquet`` or ``.csv`` file.
        columns: the columns wanted; those the file lacks are skipped.
    """
    if path.suffix == ".parquet":
        if columns is None:
            return pd.read_parquet(path)
        import pyarrow.parquet as pq

        present = set(pq.read_schema(path).names)
        return pd.read_parquet(path, columns=[c for c in columns if c in present])
    wanted = None if columns is None else (lambda name: name in set(columns))
    text = {"layer": str, "fold": str}
    return pd.read_csv(path, dtype=text, keep_default_na=False, usecols=wanted)


def load_results(folders: Sequence[str | Path]) -> Results:
    """Read and normalise the results (and predictions) of one or more output folders.

    Raises:
        ConfigError: a folder does not exist, holds no results table, or a table
            lacks a required column.
    """
    if not folders:
        raise ConfigError("no results folder given; expected at least one ser classify output")
    tables, predictions, sources = [], [], []
    for folder in map(Path, folders):
        path = _results_path(folder)
        sources.append(path)
        tables.append(normalise(read_table(path), where=str(path)))
        predicted = find_table(folder, PREDICTIONS_STEMS)
        if predicted is not None:
            frame = read_table(predicted, PREDICTION_COLUMNS)
            predictions.append(normalise_predictions(frame, where=str(predicted)))
    table = pd.concat(tables, ignore_index=True)
    preds = pd.concat(predictions, ignore_index=True) if predictions else None
    log.info("read %d result rows from %d folder(s)", len(table), len(sources))
    return Results(table=table, predictions=preds, sources=sources)


def _results_path(folder: Path) -> Path:
    if not folder.is_dir():
        raise ConfigError(f"results folder {folder} does not exist")
    path = find_table(folder, RESULTS_STEMS)
    if path is None:
        expected = ", ".join(f"{s}{x}" for s in RESULTS_STEMS for x in TABLE_SUFFIXES)
        raise ConfigError(f"{folder} holds no results table; expected one of {expected}")
    return path


def normalise(table: pd.DataFrame, where: str = "results table") -> pd.DataFrame:
    """The results table with every column the report uses, derived where absent.

    Raises:
        ConfigError: a required column is missing, the table is empty or has no UA values.
    """
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{where} lacks column(s) {', '.join(missing)}; "
            f"required: {', '.join(REQUIRED)}; found: {', '.join(map(str, table.columns))}"
        )
    if table.empty:
        raise ConfigError(f"{where} has no rows")
    out = _with_cells(table.copy())
    for metric in METRICS:
        out[metric] = pd.to_numeric(out.get(metric, np.nan), errors="coerce").astype(float)
    if out["ua"].isna().all():
        raise ConfigError(f"{where} has no numeric UA value in its column 'ua'")
    out["split_type"] = split_types(out)
    out["classic"] = classic_flags(out)
    out["untrained"] = untrained_flags(out)
    return out


def _with_cells(out: pd.DataFrame) -> pd.DataFrame:
    """Fill the cell columns from their fallbacks and defaults, all as text."""
    for side in ("train", "test"):
        corpus, condition = f"{side}_corpus", f"{side}_condition"
        if corpus not in out.columns:
            out[corpus] = out["corpus"] if "corpus" in out.columns else "corpus"
        if condition not in out.columns:
            out[condition] = out["condition"] if "condition" in out.columns else "clean"
    for column, default in DEFAULTS.items():
        if column not in out.columns:
            out[column] = default
    for column in (*CELL, "fold"):
        out[column] = out[column].fillna(DEFAULTS.get(column, "")).astype(str)
    return out


def split_types(table: pd.DataFrame) -> pd.Series:
    """Split type of every row, from the ``speaker_independent`` flag or the split name."""
    by_name = table["split"].map(
        lambda name: (
            SPEAKER_DEPENDENT
            if name in SPEAKER_DEPENDENT_SPLITS
            else PRESET_UNKNOWN
            if name == "preset"
            else SPEAKER_INDEPENDENT
        )
    )
    if "speaker_independent" not in table.columns:
        return by_name
    flag = table["speaker_independent"].map(_as_bool)
    random = table["split"].isin(SPEAKER_DEPENDENT_SPLITS)
    dependent = random.map({True: SPEAKER_DEPENDENT, False: SPEAKERS_SHARED})
    known = dependent.where(flag.ne(True), SPEAKER_INDEPENDENT)
    return known.where(flag.notna(), by_name)


def _as_bool(value: object) -> bool | None:
    if isinstance(value, str):
        text = value.strip().lower()
        return {"true": True, "1": True, "false": False, "0": False}.get(text)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return bool(value)


def classic_flags(table: pd.DataFrame) -> pd.Series:
    """Whether each row's extractor is a classic (one-layer, non-SSL) baseline."""
    typed = pd.Series(False, index=table.index)
    if "model_type" in table.columns:
        typed |= table["model_type"].astype(str).str.lower().eq("classic")
    for key in _cache_keys(table):
        typed |= key.map(lambda k: str(k.get("model_type", "")).lower() == "classic")
    name = table["model"] if "model" in table.columns else table["extractor"]
    stem = name.astype(str).str.lower().str.replace(r"-[0-9a-f]{6,}$", "", regex=True)
    flag = typed | stem.isin(CLASSIC_EXTRACTORS)
    return flag.groupby(table["extractor"]).transform("any").astype(bool)


def untrained_flags(table: pd.DataFrame) -> pd.Series:
    """Whether each row's extractor is marked as untrained (random weights)."""
    flag = pd.Series(False, index=table.index)
    for column in UNTRAINED_FIELDS:
        if column in table.columns:
            flag |= table[column].map(_as_bool).fillna(False).astype(bool)
    for column in ("extractor", *MODEL_FIELDS):
        if column in table.columns:
            flag |= table[column].astype(str).map(_untrained_name)
    for key in _cache_keys(table):
        flag |= key.map(_untrained_key)
    return flag.groupby(table["extractor"]).transform("any").astype(bool)


def _untrained_name(model: str) -> bool:
    """``random-wav2vec2`` or ``/tmp/x/tiny-untrained`` (only the last path part counts)."""
    last = Path(model.rstrip("/\\")).name if model.count("/") > 1 else model
    return bool(UNTRAINED_NAME.search(last))


def _untrained_key(key: dict) -> bool:
    if any(_as_bool(key.get(field)) for field in UNTRAINED_FIELDS):
        return True
    return any(_untrained_name(str(key[field])) for field in MODEL_FIELDS if field in key)


def _cache_keys(table: pd.DataFrame) -> list[pd.Series]:
    """Per cache-key column, every row's key as a dict (the first, for a list of keys)."""
    out = []
    for column in CACHE_KEY_COLUMNS:
        if column in table.columns:
            out.append(table[column].map(_first_key))
    return out


def _first_key(text: object) -> dict:
    try:
        data = json.loads(str(text))
    except ValueError:
        return {}
    if isinstance(data, list):
        data = next((item for item in data if isinstance(item, dict)), {})
    return data if isinstance(data, dict) else {}


def normalise_predictions(predictions: pd.DataFrame, where: str = "predictions") -> pd.DataFrame:
    """Predictions with ``true`` and ``pred`` label columns (ids and fold as text).

    Raises:
        ConfigError: the reference or predicted label column is missing.
    """
    out = predictions.copy()
    for target, aliases in (("true", TRUE_COLUMNS), ("pred", PRED_COLUMNS)):
        found = next((c for c in aliases if c in out.columns), None)
        if found is None:
            raise ConfigError(
                f"{where} lacks a {target} label column; expected one of {', '.join(aliases)}"
            )
        out[target] = out[found].astype(str)
    for column in ("cell_id", "corpus", "fold", *CELL):
        if column in out.columns:
            out[column] = out[column].astype(str)
    return out
