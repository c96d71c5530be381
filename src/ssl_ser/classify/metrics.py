"""Classification metrics computed from a confusion matrix, plus bootstrap intervals.

UA (unweighted average recall) is the mean recall over the classes present in the
reference labels, i.e. scikit-learn's ``balanced_accuracy_score``; WA is plain
accuracy; macro-F1 averages F1 over the classes present in either the reference or
the predictions, as ``f1_score(average="macro")`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """Metrics of one set of predictions against reference labels."""

    ua: float
    wa: float
    macro_f1: float
    recall: dict[str, float]
    confusion: np.ndarray
    n: int

    def as_row(self) -> dict[str, float]:
        """Flat columns for the results table (recall as ``recall_<class>``)."""
        row = {"ua": self.ua, "wa": self.wa, "macro_f1": self.macro_f1, "n_test": self.n}
        row.update({f"recall_{name}": value for name, value in self.recall.items()})
        return row


def encode(labels: Sequence[str] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class indices of string labels (-1 for a label outside `classes`)."""
    index = {name: i for i, name in enumerate(classes)}
    return np.fromiter((index.get(str(x), -1) for x in labels), dtype=np.int64, count=len(labels))


def confusion_matrix(true_idx: np.ndarray, pred_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: rows are reference classes, columns predicted classes."""
    flat = np.asarray(true_idx) * n_classes + np.asarray(pred_idx)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores_from_confusion(confusion: np.ndarray, classes: Sequence[str]) -> Scores:
    """UA, WA, macro-F1 and per-class recall of a confusion matrix."""
    confusion = np.asarray(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion).astype(float)
    present = support > 0
    recall = np.divide(hits, support, out=np.full(len(hits), np.nan), where=present)
    precision = np.divide(hits, predicted, out=np.zeros(len(hits)), where=predicted > 0)
    denominator = precision + np.nan_to_num(recall)
    f1 = np.divide(
        2 * precision * np.nan_to_num(recall),
        denominator,
        out=np.zeros(len(hits)),
        where=denominator > 0,
    )
    in_f1 = present | (predicted > 0)
    total = int(confusion.sum())
    return Scores(
        ua=float(np.mean(recall[present])) if present.any() else float("nan"),
        wa=float(hits.sum() / total) if total else float("nan"),
        macro_f1=float(np.mean(f1[in_f1])) if in_f1.any() else float("nan"),
        recall={name: float(r) for name, r in zip(classes, recall, strict=True)},
        confusion=confusion,
        n=total,
    )


def score(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> Scores:
    """Metrics of string predictions over a fixed class list."""
    true_idx = encode(y_true, classes)
    pred_idx = encode(y_pred, classes)
    if (true_idx < 0).any() or (pred_idx < 0).any():
        unknown = sorted({str(x) for x in [*y_true, *y_pred]} - set(classes))
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    return scores_from_confusion(confusion_matrix(true_idx, pred_idx, len(classes)), classes)


def bootstrap_ua(
    true_idx: np.ndarray,
    pred_idx: np.ndarray,
    n_classes: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of UA over test utterances (resampled with replacement).

    Resampling n utterances with replacement draws each (reference, prediction)
    pair with its observed frequency, so a resample's confusion matrix is
    multinomial(n, observed confusion / n). The resampled matrices are drawn that
    way directly, ``n_boot`` multinomials over the non-empty cells: the cost is
    ``n_boot`` x cells, not ``n_boot`` x n (16,000 utterances, 7 classes: 5 ms
    against 0.23 s resampling indices; see benchmarks/classify_bench.py). It is the
    same bootstrap as resampling indices; the interval depends only on the
    confusion matrix and `seed` (not on the order of utterances), and the same
    inputs and seed always give the same interval.
    """
    n = len(true_idx)
    if n == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    observed = confusion_matrix(true_idx, pred_idx, n_classes).ravel()
    filled = np.flatnonzero(observed)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, observed[filled] / n, size=n_boot)
    confusions = np.zeros((n_boot, n_classes * n_classes), dtype=np.int64)
    confusions[:, filled] = draws
    confusions = confusions.reshape(n_boot, n_classes, n_classes)
    support = confusions.sum(axis=2)
    hits = np.einsum("bii->bi", confusions)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
    ua = np.nanmean(recall, axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(ua, [tail, 100 - tail])
    return float(low), float(high)
