"""The incremental cell store and the tidy results tables.

A *cell* is one (extractor, train/test corpus and condition, layer, pooling,
classifier, split, fold) evaluation. Each finished cell is written at once to
``<output>/cells/<cell_id>.json`` (its result rows) and ``.parquet`` (its test
predictions and probabilities), each through an atomic rename, so a run that is
killed keeps every cell it finished and a re-run skips them. The tables
``results.parquet``/``results.csv`` (one row per cell and test corpus),
``predictions.parquet`` and ``summary.csv`` (mean +- std over folds, pooled UA
with a bootstrap interval) are rebuilt from all cells in the directory.

A cell whose files cannot be read (cut short by a full disk, a copy or an edit:
JSON that does not parse, a parquet file without its footer) is not finished:
it is moved to ``<output>/cells/damaged/`` with a warning and computed again.

Cells computed from features that are no longer what the same caches hold (a
cache rebuilt or re-extracted from other audio) are moved to
``<output>/cells/superseded/`` by the sweep (:meth:`CellStore.supersede`), so the
tables never mix them with cells of today's features.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser.atomic import make_folder, write_file, write_text
from ssl_ser.classify.measures import EMOTION_TARGET, TARGET_COLUMN
from ssl_ser.classify.metrics import bootstrap_ua, encode, score
from ssl_ser.results import (
    CELLS_DIR,
    DAMAGED_DIR,
    FINETUNE_CLASSIFIER,
    GROUP_COLUMNS,
    PREDICTIONS_PARQUET,
    RESULTS_CSV,
    RESULTS_PARQUET,
    SELECTED_LAYER,
    SUMMARY_CSV,
    SUPERSEDED_DIR,
)

log = logging.getLogger(__name__)


def count_finished(output: str | Path) -> int:
    """Cells a results folder already holds (each is skipped when run again); writes nothing."""
    folder = Path(output) / CELLS_DIR
    return sum(1 for _ in folder.glob("*.json")) if folder.is_dir() else 0


@contextmanager
def removed_if_refused(output: str | Path) -> Iterator[None]:
    """On an error, remove the folders this run made for `output` while they are still empty.

    A refused run then leaves no empty results folder behind; a folder that
    existed before, or that holds any file, is never removed.
    """
    folder = Path(output).absolute()
    made = [p for p in (folder / CELLS_DIR, folder, *folder.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for path in made:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break
        raise


class CellStore:
    """Finished cells of an output directory, written one by one."""

    def __init__(self, output: str | Path):
        self.output = Path(output)
        self.cells = self.output / CELLS_DIR
        make_folder(self.cells, root=self.output)

    def done(self, cell: str) -> bool:
        """Whether cell `cell` finished in an earlier or the current run (its files readable)."""
        path = self.cells / f"{cell}.json"
        return path.exists() and self._rows(path) is not None

    def _rows(self, path: Path) -> list[dict] | None:
        """The result rows of the cell stored at `path` (its JSON), or None if damaged (moved)."""
        import pyarrow.parquet as pq
        from pyarrow import ArrowException

        table = path.with_suffix(".parquet")
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError("not a list of result rows")
            if table.exists():
                pq.read_metadata(table)
        except (OSError, ValueError, UnicodeDecodeError, ArrowException) as error:
            why = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            target = self._move(path, DAMAGED_DIR)
            log.warning(
                "cell %s in %s cannot be read (%s; cut short?): not finished, so it is computed "
                "again; its files were moved to %s",
                path.stem,
                self.cells,
                why,
                target,
            )
            return None
        return rows

    def _move(self, path: Path, folder: str) -> Path:
        """Move a cell's files (JSON and parquet) into ``cells/<folder>/``; returns that folder."""
        target = self.cells / folder
        make_folder(target, root=self.output)
        for moved in (path, path.with_suffix(".parquet")):
            with contextlib.suppress(FileNotFoundError):  # absent, or another process moved it
                os.replace(moved, target / moved.name)
        return target

    def save(self, cell: str, rows: Sequence[Mapping[str, Any]], predictions: pd.DataFrame) -> None:
        """Store a cell: predictions first, then the rows that mark it finished."""
        write_file(
            self.cells / f"{cell}.parquet",
            lambda p: predictions.to_parquet(p, index=False),
            root=self.output,
        )
        text = json.dumps(list(rows), default=_json_default, indent=1)
        write_text(self.cells / f"{cell}.json", text, root=self.output)

    def supersede(self, stale: Callable[[Mapping[str, Any]], bool]) -> int:
        """Move every cell whose first result row `stale` accepts to ``cells/superseded/``.

        Moved cells are kept for inspection but no longer count as done or reach
        the tables. Returns how many cells were moved.
        """
        moved = 0
        for path in sorted(self.cells.glob("*.json")):
            rows = self._rows(path)
            if rows and stale(rows[0]):
                self._move(path, SUPERSEDED_DIR)
                moved += 1
        return moved

    def load(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """All finished cells: (results rows, predictions)."""
        rows: list[dict] = []
        predictions = []
        for path in sorted(self.cells.glob("*.json")):
            stored = self._rows(path)
            if stored is None:
                continue
            rows += stored
            table = path.with_suffix(".parquet")
            if table.exists():
                predictions.append(pd.read_parquet(table))
        results = pd.DataFrame(rows)
        if TARGET_COLUMN in results.columns:  # rows stored before targets predicted emotion
            results[TARGET_COLUMN] = results[TARGET_COLUMN].fillna(EMOTION_TARGET)
        return results, (
            pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame()
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):  # numpy numbers and arrays as Python's
        return value.tolist()
    return str(value)


def write_tables(store: CellStore, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Path]:
    """Rebuild results (parquet, CSV), predictions and summary from the stored cells."""
    results, predictions = store.load()
    paths = {
        "results": store.output / RESULTS_PARQUET,
        "results_csv": store.output / RESULTS_CSV,
        "predictions": store.output / PREDICTIONS_PARQUET,
        "summary": store.output / SUMMARY_CSV,
    }
    summary = summarise(results, predictions, n_boot=n_boot, seed=seed)
    root = store.output
    write_file(paths["results"], lambda p: results.to_parquet(p, index=False), root=root)
    write_file(paths["results_csv"], lambda p: results.to_csv(p, index=False), root=root)
    write_file(paths["predictions"], lambda p: predictions.to_parquet(p, index=False), root=root)
    write_file(paths["summary"], lambda p: summary.to_csv(p, index=False), root=root)
    return paths


# a summary row's numbers over its folds' cells
FOLD_STATS: dict[str, tuple[str, str]] = {
    "n_folds": ("fold", "nunique"),
    "ua_mean": ("ua", "mean"),
    "ua_std": ("ua", "std"),
    "wa_mean": ("wa", "mean"),
    "wa_std": ("wa", "std"),
    "macro_f1_mean": ("macro_f1", "mean"),
    "macro_f1_std": ("macro_f1", "std"),
    "n_test": ("n_test", "sum"),
}


def summarise(
    results: pd.DataFrame, predictions: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The summary table: per group, mean +- std over folds and pooled UA with its interval.

    Pooled UA is computed over all test utterances of the group with a bootstrap
    95% interval; rows with layer ``selected`` add inner-validation layer choice.
    """
    if results.empty:
        return pd.DataFrame(columns=[*GROUP_COLUMNS, "n_folds", "ua_mean", "ua_std"])
    keys = [c for c in (*GROUP_COLUMNS, TARGET_COLUMN) if c in results.columns]  # older lack some
    measured = {
        f"{column}_{stat}": (column, stat)
        for column in ("compression", "mdl_bits")
        if column in results.columns
        for stat in ("mean", "std")
    }
    summary = (
        results.groupby(keys, dropna=False, sort=True).agg(**FOLD_STATS, **measured).reset_index()
    )
    pooled = [
        _pooled(rows, predictions, n_boot, seed)
        for _, rows in results.groupby(keys, dropna=False, sort=True)
    ]
    summary[["ua_pooled", "ua_low", "ua_high"]] = pd.DataFrame(pooled, index=summary.index)
    selected = select_layers(results)
    return pd.concat([summary, selected], ignore_index=True) if len(selected) else summary


def _pooled(
    rows: pd.DataFrame, predictions: pd.DataFrame, n_boot: int, seed: int
) -> tuple[float, float, float]:
    """UA over all test predictions of a group, with its bootstrap interval."""
    if predictions.empty:
        return (float("nan"),) * 3
    chosen = predictions[predictions["cell_id"].isin(set(rows["cell_id"]))]
    test_corpus = rows["test_corpus"].iloc[0]
    if "+" not in str(test_corpus):
        chosen = chosen[chosen["corpus"] == test_corpus]
    if chosen.empty:
        return (float("nan"),) * 3
    classes = sorted(set(chosen["label"]) | set(chosen["predicted"]))
    true_idx = encode(chosen["label"].to_numpy(), classes)
    pred_idx = encode(chosen["predicted"].to_numpy(), classes)
    ua = score(chosen["label"], chosen["predicted"], classes).ua
    low, high = bootstrap_ua(true_idx, pred_idx, len(classes), n_boot=n_boot, seed=seed)
    return ua, low, high


def select_layers(results: pd.DataFrame) -> pd.DataFrame:
    """Per fold, the layer with the best inner-validation UA (training speakers only).

    This is the honest single number of a layer sweep: the layer is chosen
    without looking at the test fold, and its test UA is averaged over folds.
    Groups without validation scores are skipped.
    """
    if "val_ua" not in results or results["val_ua"].isna().all():
        return pd.DataFrame()
    # single numbered layers only: not ranges, learned mixes or fine-tuned models ("all")
    single = pd.to_numeric(results["layer"], errors="coerce").notna()
    per_layer = results[single & results["val_ua"].notna()]
    # ties in validation UA go to the lowest layer, whatever order the cells were stored in
    depth = pd.to_numeric(per_layer["layer"], errors="coerce")
    per_layer = per_layer.iloc[np.argsort(depth.to_numpy(), kind="stable")]
    keys = [c for c in (*GROUP_COLUMNS, TARGET_COLUMN) if c != "layer" and c in results.columns]
    by_fold = per_layer.groupby([*keys, "fold"], dropna=False, sort=True)["val_ua"].idxmax()
    groups = per_layer.loc[by_fold].groupby(keys, dropna=False, sort=True)
    selected = groups.agg(**FOLD_STATS).reset_index()
    selected.insert(len(keys), "layer", SELECTED_LAYER)
    selected["chosen_layers"] = [
        json.dumps(dict(zip(best["fold"].astype(str), best["layer"].astype(str), strict=True)))
        for _, best in groups
    ]
    return selected


def _where(row: pd.Series) -> str:
    """``emodb clean`` or ``emodb -> emovo, clean -> telephone``: what a summary row tested."""
    corpora = (str(row.get("train_corpus", "")), str(row.get("test_corpus", "")))
    conditions = (str(row.get("train_condition", "")), str(row.get("test_condition", "")))
    corpus = corpora[0] if corpora[0] == corpora[1] else " -> ".join(corpora)
    condition = conditions[0] if conditions[0] == conditions[1] else " -> ".join(conditions)
    return f"{Path(str(row['extractor'])).name} on {corpus}, {condition}"


def summary_line(summary: pd.DataFrame) -> str:
    """One line: best layer and UA (mean +- std over folds) per classifier."""
    if summary.empty:
        return "no results"
    parts, others = [], []
    if TARGET_COLUMN in summary.columns:  # other targets get their own parts, named
        for target, part in summary.groupby(TARGET_COLUMN, sort=True):
            if target != EMOTION_TARGET:
                others.append(f"[{target}] {summary_line(part.drop(columns=TARGET_COLUMN))}")
        summary = summary[summary[TARGET_COLUMN] == EMOTION_TARGET]
        if summary.empty:
            return "; ".join(others)
    curves = summary[summary["layer"] != SELECTED_LAYER]
    for classifier, part in curves.groupby("classifier", sort=False):
        best = part.loc[part["ua_mean"].idxmax()]
        folds = int(best.get("n_folds", 0) or 0)
        spread = f"±{best['ua_std']:.3f}" if folds > 1 and pd.notna(best["ua_std"]) else ""
        what = f"best layer {best['layer']}"
        if classifier == FINETUNE_CLASSIFIER:  # a fine-tuned model has no best layer of its own
            what = f"layers {best['layer']}, setting {best.get('setting', 'default')}"
        text = (
            f"{classifier}: {what} UA {best['ua_mean']:.3f}{spread} "
            f"({_where(best)}, {best['pooling']}, {folds} fold{'s' if folds != 1 else ''})"
        )
        chosen = summary[
            (summary["layer"] == SELECTED_LAYER) & (summary["classifier"] == classifier)
        ]
        if len(chosen) and classifier != FINETUNE_CLASSIFIER:  # a fine-tune reads one layer
            text += f" (layer chosen on training speakers: UA {chosen['ua_mean'].max():.3f})"
        parts.append(text)
    return "; ".join([*parts, *others])
