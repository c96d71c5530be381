"""Scoring a fitted cell: its metrics (pooled and per test corpus) and its predictions table.

Probe cells and fine-tune cells are scored here alike, so both land in the same
results schema (see :mod:`ssl_ser.classify.results`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser import __version__
from ssl_ser.classify.metrics import bootstrap_ua, confusion_matrix, scores_from_confusion
from ssl_ser.classify.splits import Fold


@dataclass
class Rows:
    """Per-row arrays the tasks need (small; the features travel separately)."""

    codes: np.ndarray
    groups: np.ndarray
    utt_ids: np.ndarray
    corpora: np.ndarray
    classes: tuple[str, ...]
    # the manifest's speaker and gender of every row, stored with the predictions so that
    # paired comparisons resample within speakers and the report breaks UA down by group
    speakers: np.ndarray | None = None
    genders: np.ndarray | None = None

    @classmethod
    def of(cls, table: pd.DataFrame, classes: tuple[str, ...]) -> Rows:
        """The arrays of a labelled, speaker-grouped table (a sweep's or a fine-tune's)."""
        return cls(
            codes=table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
            groups=(table["group"] + "|" + table["condition"]).to_numpy(),
            utt_ids=table["utt_id"].to_numpy(),
            corpora=table["corpus"].to_numpy(),
            classes=classes,
            speakers=table["speaker"].astype(str).to_numpy(),
            genders=table["gender"].astype(str).to_numpy(),
        )


@dataclass
class Outcome:
    """A fitted cell's test output: predicted codes, probabilities, chosen values."""

    predicted: np.ndarray
    probabilities: np.ndarray | None
    class_codes: np.ndarray
    chosen: dict[str, Any]
    val_ua: float
    seconds: float


@dataclass
class CellInfo:
    """What names a stored cell besides its fold: shared columns, layer, pooling, classifier."""

    meta: Mapping[str, Any]
    layer: str
    pooling: str
    classifier: str
    params: Mapping[str, Any]
    n_dropped: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


def predictions_table(
    cell: str, base: Mapping[str, Any], fold: Fold, outcome: Outcome, rows: Rows
) -> pd.DataFrame:
    """One row per test utterance of a cell: its label, prediction and class probabilities."""
    classes = np.array(rows.classes)
    table = pd.DataFrame(
        {
            "cell_id": cell,
            "utt_id": rows.utt_ids[fold.test],
            "corpus": rows.corpora[fold.test],
            **_who(rows, fold),
            "condition": base["test_condition"],
            "fold": base["fold"],
            "layer": base["layer"],
            "pooling": base["pooling"],
            "classifier": base["classifier"],
            "label": classes[rows.codes[fold.test]],
            "predicted": classes[np.asarray(outcome.predicted, dtype=np.int64)],
        }
    )
    for i, name in enumerate(classes):
        column = np.full(len(table), np.nan)
        if outcome.probabilities is not None:
            where = np.flatnonzero(outcome.class_codes == i)
            if len(where):
                column = outcome.probabilities[:, where[0]]
        table[f"prob_{name}"] = column
    return table


def _who(rows: Rows, fold: Fold) -> dict[str, np.ndarray]:
    """The ``speaker`` and ``gender`` columns of a fold's test rows, where known."""
    found = {"speaker": rows.speakers, "gender": rows.genders}
    return {name: values[fold.test] for name, values in found.items() if values is not None}


@dataclass
class ScoredCell:
    """A cell ready to store: its id, result rows and predictions (what a remote task returns)."""

    cell: str
    rows: list[dict[str, Any]]
    predictions: pd.DataFrame


def score_cell(
    cell: str,
    info: CellInfo,
    fold: Fold,
    outcome: Outcome,
    rows: Rows,
    *,
    bootstrap: int,
    seed: int,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """A cell's result rows (pooled, and per test corpus of a pooled fold) and predictions."""
    classes = rows.classes
    true = rows.codes[fold.test]
    predicted = np.asarray(outcome.predicted, dtype=np.int64)
    base = {
        **{k: v for k, v in info.meta.items() if k not in ("split_options", "data_digest")},
        "layer": info.layer,
        "pooling": info.pooling,
        "classifier": info.classifier,
        "cell_id": cell,
        "n_train": len(fold.train),
        "n_dropped": info.n_dropped,
        "params": json.dumps({**info.params, **outcome.chosen}, sort_keys=True, default=str),
        "val_ua": outcome.val_ua,
        "fit_seconds": round(outcome.seconds, 3),
        "toolkit_version": __version__,  # recorded, not part of the cell id
        **info.extra,
    }
    corpora = rows.corpora[fold.test]
    scopes = [(base["test_corpus"], np.ones(len(true), dtype=bool))]
    present = np.unique(corpora)
    if len(present) > 1 or present[0] != base["test_corpus"]:  # a pooled fold: per corpus too
        scopes += [(c, corpora == c) for c in present]
    result_rows = []
    for scope, mask in scopes:
        confusion = confusion_matrix(true[mask], predicted[mask], len(classes))
        scores = scores_from_confusion(confusion, classes)
        low, high = bootstrap_ua(
            true[mask], predicted[mask], len(classes), n_boot=bootstrap, seed=seed
        )
        result_rows.append(
            {
                **base,
                "test_corpus": scope,
                **scores.as_row(),
                "ua_low": low,
                "ua_high": high,
                "confusion": json.dumps(confusion.tolist()),
            }
        )
    return result_rows, predictions_table(cell, base, fold, outcome, rows)
