"""Read results tables (and stored predictions) and bring them to one tidy shape.

The report reads what ``ser classify`` (and ``ser finetune``) write: the
results table (one row per cell and fold) and the per-utterance test
predictions, from the folders and duplicates rules of docs/report.md; a run
that stopped before writing its tables is read from its stored cells
(:mod:`ssl_ser.report.stored`).

Columns the report needs but a table lacks are derived here, in one place:

- ``train_corpus``/``test_corpus`` and ``train_condition``/``test_condition``
  fall back to ``corpus`` and ``condition`` (mono-corpus runs);
- ``split_type``: "speaker-independent", "speaker-dependent (random utterance
  split)" or "speaker-dependent (speakers shared by train and test)", from the
  ``speaker_independent`` column when present, else from the split name;
- ``labels``, ``speaker_norm``, ``search`` and ``seed`` (part of a cell's
  identity in ``ser classify`` output) default to one value when absent, and
  ``target`` (what the probe predicts, issue 21) to ``emotion``;
- ``classic``: whether the extractor is a one-layer classic baseline (eGeMAPS,
  MFCC, log-mel) rather than a layered SSL model;
- ``untrained``: whether the extractor's model has random weights, decided
  from what the model is, never from its name (:func:`untrained_flags`);
- ``finetune_setup``: a ``ser finetune`` row's setup as text (:func:`setup_text`);
  part of a cell's identity, so two fine-tunes of one model and corpus that
  differ in any setting are two cells, never averaged as folds of one (empty
  for probes);
- ``source``: the folder a row was read from;
- ``predicted_classes`` (:func:`predicted_classes`): one class means the
  classifier collapsed, its UA sits at chance whatever the features hold.

Predictions are matched to result rows through their ``cell_id`` (a pooled
multi-corpus test fold is narrowed to one corpus through the ``corpus`` column).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser.errors import ConfigError
from ssl_ser.report.stored import (
    cell_files,
    in_progress,
    incomplete_text,
    missing_from_table,
    read_cells,
)
from ssl_ser.results import (
    CELLS_DIR,
    FINETUNE_CLASSIFIER,
    PREDICTIONS_PARQUET,
    RESULTS_CSV,
    RESULTS_PARQUET,
)

log = logging.getLogger(__name__)

RESULTS_TABLES: tuple[str, ...] = (RESULTS_PARQUET, RESULTS_CSV)
PREDICTIONS_TABLES: tuple[str, ...] = (PREDICTIONS_PARQUET, "predictions.csv")
# Where ser probe/ser run put a variant's results (ssl_ser.pipelines.plan.RESULTS_FOLDER):
# OUT/results, or OUT/<variant>/results for several seeds or few-shot counts.
PIPELINE_RESULTS = "results"

# What identifies one cell of a sweep (its folds are the rows of the cell).
SETTING: tuple[str, ...] = (
    "extractor",
    "train_corpus",
    "train_condition",
    "test_corpus",
    "test_condition",
    "split",
    "labels",
    "seed",
    "shots",
    "target",
)
CONFIG: tuple[str, ...] = (
    "layer",
    "pooling",
    "classifier",
    "speaker_norm",
    "search",
    "finetune_setup",
)
# Settings that change what a number means: cells that differ in one of them are
# never compared in one table, figure, matrix or headline (see ssl_ser.report.groups).
GROUP: tuple[str, ...] = ("labels", "split", "speaker_norm", "search", "seed", "shots")
# Identity columns that older or hand-made tables may lack, and their value then.
DEFAULTS: dict[str, str] = {
    "fold": "0",
    "pooling": "mean",
    "labels": "",
    "speaker_norm": "False",
    "search": "False",
    "seed": "",
    "shots": "",
    "finetune_setup": "",
    "target": "emotion",
}
CELL: tuple[str, ...] = SETTING + CONFIG
METRICS: tuple[str, ...] = ("ua", "wa", "macro_f1")
REQUIRED: tuple[str, ...] = ("extractor", "layer", "classifier", "split", "ua")
# Two copies of one result row agree when their numbers agree to this relative tolerance
# (a CSV round trip may change the last digit).
SAME_NUMBER_RTOL = 1e-9
COMPARED_NUMBERS: tuple[str, ...] = (*METRICS, "n_test")

CLASSIC_EXTRACTORS: tuple[str, ...] = ("egemaps", "mfcc", "logmel")
# ser finetune's column naming a run's settings that differ from the defaults
# ("default", or "freeze=base, learning_rate=0.001").
SETTING_COLUMN = "setting"
DEFAULT_SETTING = "default"
# The params keys the setup text spells out itself.
SHOWN_PARAMS: tuple[str, ...] = (
    "head",
    "freeze",
    "top_layers",
    "adapter",
    "lora_rank",
    "epochs",
    "learning_rate",
)
FREEZE_TEXT: dict[str, str] = {
    "feature-encoder": "feature encoder frozen",
    "base": "base frozen (head only)",
    "none": "nothing frozen",
}
SPEAKER_INDEPENDENT = "speaker-independent"
SPEAKER_DEPENDENT = "speaker-dependent (random utterance split)"
SPEAKERS_SHARED = "speaker-dependent (speakers shared by train and test)"
PRESET_UNKNOWN = "preset split (speaker overlap not recorded)"
SPEAKER_DEPENDENT_SPLITS: tuple[str, ...] = ("random",)
UNTRAINED_FIELDS: tuple[str, ...] = ("untrained", "random_init", "random_weights")
# A cache key's revision for weights the toolkit initialised at random
# (ssl_ser.extract.backbones.UNTRAINED_REVISION_PREFIX).
UNTRAINED_REVISION_PREFIX = "untrained:"
MODEL_FIELDS: tuple[str, ...] = ("model", "model_id")
CACHE_KEY_COLUMNS: tuple[str, ...] = ("cache_keys", "cache_key")
TRUE_COLUMNS: tuple[str, ...] = ("label", "y_true", "true", "emotion")
PRED_COLUMNS: tuple[str, ...] = ("pred", "prediction", "y_pred", "predicted")
# What the report reads of the predictions (not the per-class probabilities); the
# utterance, speaker and gender pair cells and break UA down (ssl_ser.report.compare).
PREDICTION_COLUMNS: tuple[str, ...] = (
    "cell_id",
    "utt_id",
    "corpus",
    "speaker",
    "gender",
    "fold",
    *CELL,
    *TRUE_COLUMNS,
    *PRED_COLUMNS,
)


@dataclass
class Results:
    """The normalised results table and, when stored, the per-utterance predictions.

    Attributes:
        table: one row per cell, fold and test corpus (deduplicated).
        predictions: the stored test predictions (of the kept rows only), or None.
        sources: the results files read.
        duplicates: one sentence per set of folders that held the same cells.
        incomplete: one sentence per folder whose run stopped before it finished
            (:mod:`ssl_ser.report.stored`).
    """

    table: pd.DataFrame
    predictions: pd.DataFrame | None
    sources: list[Path]
    duplicates: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Class names, from the ``recall_<class>`` columns (in table order)."""
        return [c.removeprefix("recall_") for c in self.table.columns if c.startswith("recall_")]


def find_table(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of the files `names` (parquet before CSV) found in `folder`, or None."""
    return next((folder / name for name in names if (folder / name).is_file()), None)


def read_table(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A parquet or CSV table (layer and fold kept as text), optionally only some columns.

    Args:
        path: the ``.parquet`` or ``.csv`` file.
        columns: the columns wanted; those the file lacks are skipped.

    Raises:
        ConfigError: the file is not a readable table (damaged, empty, not parquet).
    """
    from pyarrow import ArrowException

    try:
        return _read_table(path, columns)
    except (ArrowException, OSError, ValueError, UnicodeDecodeError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise ConfigError(
            f"{path} is not a readable table ({detail[:200]}); it is damaged or not a "
            "table: rebuild or remove it"
        ) from None


def _read_table(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
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
    """Read, normalise and deduplicate the results (and predictions) of output folders.

    Args:
        folders: ``ser classify`` output folders, or ``ser probe``/``ser run``
            output folders (their ``results/`` subfolders are read).

    Raises:
        ConfigError: a folder does not exist or holds no results table, a table
            lacks a required column, or two folders hold different numbers for
            one cell.
    """
    if not folders:
        raise ConfigError("no results folder given; expected at least one ser classify output")
    tables, predictions, sources, incomplete = [], [], [], []
    for path in _unique_paths(p for folder in map(Path, folders) for p in results_paths(folder)):
        sources.append(path)
        source = str(path.parent)
        frame, predicted, note = read_source(path)
        tables.append(normalise(frame, where=str(path)).assign(source=source))
        if predicted is not None:
            predictions.append(predicted.assign(source=source))
        if note:
            incomplete.append(note)
    table = pd.concat(tables, ignore_index=True)
    table, duplicates = deduplicate(table)
    check_repeated_cells(table)
    preds = pd.concat(predictions, ignore_index=True) if predictions else None
    if preds is not None and "cell_id" in preds.columns and "cell_id" in table.columns:
        preds = _kept_predictions(preds, table)
    table["predicted_classes"] = predicted_classes(table, preds)
    log.info("read %d result rows from %d table(s)", len(table), len(sources))
    return Results(table, preds, sources, duplicates, incomplete)


def read_source(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """(rows, predictions, incomplete note) of a results table, or of a run's stored cells.

    A table older than the cells stored beside it (a resumed run that stopped
    again) is set aside for the cells; a ``cells/`` folder is read when the run
    never wrote its table. Either way the note says the run is incomplete.
    """
    folder = path.parent
    if path.name == CELLS_DIR and path.is_dir():
        rows, predicted = read_cells(folder)
        note = incomplete_text(folder, rows, "the run stopped before writing its results table")
        return rows, _predictions(predicted, path), note
    table = read_table(path)
    missing = missing_from_table(folder, table)
    if missing:
        rows, predicted = read_cells(folder)
        why = f"{len(missing)} stored fold(s) are newer than its results table"
        return rows, _predictions(predicted, path), incomplete_text(folder, rows, why)
    found = find_table(folder, PREDICTIONS_TABLES)
    predicted = None if found is None else read_table(found, PREDICTION_COLUMNS)
    running = in_progress(folder)
    note = incomplete_text(folder, table, "folds still training") if running else ""
    return table, _predictions(predicted, found or path), note


def _predictions(frame: pd.DataFrame | None, where: Path) -> pd.DataFrame | None:
    if frame is None or frame.empty:
        return None
    wanted = [column for column in PREDICTION_COLUMNS if column in frame.columns]
    return normalise_predictions(frame[wanted], where=str(where))


def results_paths(folder: Path) -> list[Path]:
    """The results tables of `folder`: its own, else those of its pipeline ``results/`` folders.

    Raises:
        ConfigError: the folder does not exist or none is found.
    """
    if not folder.is_dir():
        raise ConfigError(f"results folder {folder} does not exist")
    own = _results_of(folder)
    if own is not None:
        return [own]
    candidates = [folder / PIPELINE_RESULTS, *sorted(folder.glob(f"*/{PIPELINE_RESULTS}"))]
    found = [path for c in candidates if c.is_dir() and (path := _results_of(c))]
    if found:
        return found
    expected = ", ".join(RESULTS_TABLES)
    raise ConfigError(
        f"{folder} holds no results table and no finished cells; expected one of {expected} "
        "(or cells/ of a stopped run) in it, in "
        f"{folder / PIPELINE_RESULTS} (ser probe/ser run output) or in "
        f"{folder / '<variant>' / PIPELINE_RESULTS}"
    )


def _results_of(folder: Path) -> Path | None:
    """`folder`'s results table, else its ``cells/`` folder when a stopped run left only cells."""
    table = find_table(folder, RESULTS_TABLES)
    if table is None and cell_files(folder):
        return folder / CELLS_DIR
    return table


def _unique_paths(paths: Iterable[Path]) -> list[Path]:
    """`paths` without repeats (the same file named twice is read once)."""
    seen: dict[Path, Path] = {}
    for path in paths:
        seen.setdefault(path.resolve(), path)
    return list(seen.values())


def row_identity(table: pd.DataFrame) -> list[str]:
    """Columns that identify one result row: its cell id (when stored) and cell, fold."""
    ids = ["cell_id"] if "cell_id" in table.columns else []
    return [*ids, *CELL, "fold"]


def deduplicate(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep one copy of every result row given more than once; say which folders repeated.

    Raises:
        ConfigError: two copies of one row disagree in their numbers (naming the
            cell, fold and folders).
    """
    identity = row_identity(table)
    if "cell_id" in table.columns:
        table = table.assign(cell_id=table["cell_id"].astype(str))
    repeated = table.duplicated(subset=identity, keep=False)
    if not repeated.any():
        return table, []
    copies = table[repeated]
    for _, rows in copies.groupby(identity, sort=False, dropna=False):
        _check_same_numbers(rows)
    folders = copies.groupby(identity, sort=False, dropna=False)["source"].agg(
        lambda s: " and ".join(sorted(set(s)))
    )
    lines = [
        f"{count} result row(s) appear in both {where} with identical numbers; each is counted once"
        for where, count in folders.value_counts(sort=False).sort_index().items()
    ]
    return table.drop_duplicates(subset=identity, keep="first").reset_index(drop=True), lines


def _check_same_numbers(rows: pd.DataFrame) -> None:
    """Refuse copies of one result row whose numbers differ."""
    for column in COMPARED_NUMBERS:
        if column not in rows.columns:
            continue
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
        same = np.isclose(values, values[0], rtol=SAME_NUMBER_RTOL, atol=0.0, equal_nan=True)
        if not same.all():
            first = rows.iloc[0]
            ident = f"cell {first['cell_id']} " if "cell_id" in rows.columns else "cell "
            shown = ", ".join(
                f"{v:.6g} in {s}" for v, s in zip(values, rows["source"], strict=True)
            )
            raise ConfigError(
                f"{ident}({describe_cell(first)}, fold {first['fold']}) has different "
                f"{column} values: {shown}; these folders hold different runs of the same "
                "cell, so report them separately"
            )


def check_repeated_cells(table: pd.DataFrame) -> None:
    """Refuse one cell and fold stored under two ids: different data or options, never averaged.

    Raises:
        ConfigError: naming the cell, the fold, the ids and the folders.
    """
    if "cell_id" not in table.columns:
        return
    key = [*CELL, "fold"]
    repeated = table[table.duplicated(subset=key, keep=False)]
    if repeated.empty:
        return
    rows = next(iter(repeated.groupby(key, sort=True)))[1]
    first = rows.iloc[0]
    ids = ", ".join(f"{i} in {s}" for i, s in zip(rows["cell_id"], rows["source"], strict=True))
    raise ConfigError(
        f"{describe_cell(first)}, fold {first['fold']}, was run more than once with "
        f"different data or options (cell ids {ids}); averaging them would count the fold "
        "twice. Report each folder on its own (e.g. one few-shot count), or re-run ser "
        "classify into a fresh folder"
    )


def describe_cell(row: pd.Series) -> str:
    """``mfcc, emodb clean -> emodb telephone, layer 0, mean, logreg, speaker-kfold, basic4``."""
    seed = f", seed {row['seed']}" if str(row.get("seed", "")) else ""
    return (
        f"{row['extractor']}, {row['train_corpus']} {row['train_condition']} -> "
        f"{row['test_corpus']} {row['test_condition']}, layer {row['layer']}, "
        f"{row['pooling']}, {row['classifier']}, {row['split']} split, labels "
        f"{row['labels'] or 'unrecorded'}{seed}"
    )


def _kept_predictions(predictions: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The predictions of each kept cell from the folder its rows were kept from (no doubles)."""
    kept = table[["cell_id", "source"]].drop_duplicates("cell_id")
    pairs = pd.MultiIndex.from_frame(kept)
    mine = pd.MultiIndex.from_frame(predictions[["cell_id", "source"]].astype(str))
    return predictions[mine.isin(pairs)].reset_index(drop=True)


def predicted_classes(table: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.Series:
    """Per result row, how many distinct classes were predicted on its test fold (NaN: unknown).

    From the stored predictions through ``cell_id`` (a per-corpus row of a pooled
    fold counts only that corpus's utterances); rows without predictions fall
    back to the non-empty columns of their ``confusion`` matrix.
    """
    out = pd.Series(np.nan, index=table.index, dtype=float)
    if "confusion" in table.columns:
        out = table["confusion"].map(_confusion_predicted).astype(float)
    if predictions is None or "cell_id" not in predictions or "cell_id" not in table:
        return out
    whole = predictions.groupby("cell_id")["pred"].nunique()
    found = table["cell_id"].map(whole).astype(float)
    if "corpus" in predictions.columns:
        per_corpus = predictions.groupby(["cell_id", "corpus"])["pred"].nunique()
        narrowed = ~table["test_corpus"].str.contains("+", regex=False)
        index = pd.MultiIndex.from_frame(table.loc[narrowed, ["cell_id", "test_corpus"]])
        found.loc[narrowed] = per_corpus.reindex(index).to_numpy(dtype=float)
    return found.where(found.notna(), out)


def _confusion_predicted(text: object) -> float:
    """Distinct predicted classes of a stored confusion matrix (rows true, columns predicted)."""
    try:
        matrix = np.asarray(json.loads(str(text)), dtype=float)
    except (ValueError, TypeError):
        return np.nan
    if matrix.ndim != 2 or matrix.size == 0:
        return np.nan
    return float((matrix.sum(axis=0) > 0).sum())


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
    out = table.copy()
    out["finetune_setup"] = finetune_setups(out)
    out = _with_cells(out)
    for metric in METRICS:
        found = out[metric] if metric in out.columns else pd.Series(np.nan, index=out.index)
        out[metric] = pd.to_numeric(found, errors="coerce").astype(float)
    if out["ua"].isna().all():
        raise ConfigError(f"{where} has no numeric UA value in its column 'ua'")
    out["split_type"] = split_types(out)
    out["classic"] = classic_flags(out)
    out["untrained"] = untrained_flags(out)
    out["slice"] = slice_flags(out)
    if "source" not in out.columns:
        out["source"] = where
    return out


def is_finetune(frame: pd.DataFrame) -> pd.Series:
    """Whether each row (or cell) is an end-to-end fine-tuned model (``ser finetune``)."""
    return frame["classifier"].astype(str).eq(FINETUNE_CLASSIFIER)


def finetune_setups(table: pd.DataFrame) -> pd.Series:
    """Each fine-tune row's :func:`setup_text`; '' for probes."""
    out = pd.Series("", index=table.index, dtype=object)
    tuned = is_finetune(table)
    absent = pd.Series(None, index=table.index, dtype=object)
    params = table["params"] if "params" in table.columns else absent
    setting = table[SETTING_COLUMN] if SETTING_COLUMN in table.columns else absent
    for index in table.index[tuned]:
        out[index] = setup_text(params[index], setting[index])
    return out


def setup_text(params: object, setting: object = None) -> str:
    """``linear head · feature encoder frozen · 20 epochs max · lr 1e-05 · warmup=0.2``.

    From a params dict (or its JSON text); then the pairs of a ``setting`` text
    (``freeze=base, warmup=0.2``: what differs from ``ser finetune``'s defaults)
    whose keys the first part does not already show.
    """
    data = params_dict(params)
    parts = []
    if data.get("head") is not None:
        parts.append(f"{data['head']} head")
    freeze = data.get("freeze")
    if freeze == "top":
        parts.append(f"top {data.get('top_layers')} layers trained")
    elif freeze is not None:
        parts.append(FREEZE_TEXT.get(str(freeze), f"freeze {freeze}"))
    if data.get("adapter") not in (None, "none"):
        rank = data.get("lora_rank")
        parts.append(f"{data['adapter']}" + (f" rank {rank}" if rank is not None else ""))
    if data.get("epochs") is not None:
        parts.append(f"{data['epochs']} epochs max")
    rate = data.get("learning_rate")
    if rate is not None:
        parts.append(f"lr {rate:g}" if _is_number(rate) else f"lr {rate}")
    return " · ".join([*parts, *_other_settings(setting, shown=SHOWN_PARAMS if data else ())])


def _other_settings(setting: object, shown: Sequence[str]) -> list[str]:
    """The ``key=value`` pairs of a ``setting`` text whose key is not in `shown`."""
    if not isinstance(setting, str) or setting.strip() in ("", DEFAULT_SETTING):
        return []
    pairs = [part.strip() for part in setting.split(", ") if part.strip()]
    return [pair for pair in pairs if pair.partition("=")[0] not in shown]


def params_dict(params: object) -> dict:
    """A row's params as a dict, whether stored as a dict or as JSON text ({} if neither)."""
    return params if isinstance(params, dict) else _json_dict(params)


def _json_dict(text: object) -> dict:
    """A JSON object stored as text, or {} (NaN, invalid JSON, not an object)."""
    try:
        data = json.loads(str(text))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def slice_flags(table: pd.DataFrame) -> pd.Series:
    """Whether each row is one corpus's slice of a pooled test fold.

    ``ser classify`` scores a fold pooled over several test corpora as a whole
    (test ``emodb+emovo``) and per corpus (``emodb``, ``emovo``) under one cell id;
    the slices are smaller test sets, never the headline's best number.
    """
    if "cell_id" not in table.columns:
        return pd.Series(False, index=table.index)
    parts = table["test_corpus"].astype(str).str.count(r"\+")
    widest = parts.groupby(table["cell_id"].astype(str)).transform("max")
    return (parts < widest).fillna(False).astype(bool)


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
    """Whether each row's extractor has random weights (a flag column or cache-key field).

    The cache key says so when its ``revision`` starts with ``untrained:`` (the
    toolkit's random-weights marker was in the model folder at extraction) or
    a field of :data:`UNTRAINED_FIELDS` is true. The model's name plays no part.
    """
    flag = pd.Series(False, index=table.index)
    for column in UNTRAINED_FIELDS:
        if column in table.columns:
            flag |= table[column].map(_as_bool).fillna(False).astype(bool)
    for key in _cache_keys(table):
        flag |= key.map(_untrained_key)
    return flag.groupby(table["extractor"]).transform("any").astype(bool)


def _untrained_key(key: dict) -> bool:
    if any(_as_bool(key.get(field)) for field in UNTRAINED_FIELDS):
        return True
    return str(key.get("revision", "")).startswith(UNTRAINED_REVISION_PREFIX)


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
    for column in ("cell_id", "utt_id", "corpus", "speaker", "gender", "fold", *CELL):
        if column in out.columns:
            out[column] = out[column].astype(str)
    return out
