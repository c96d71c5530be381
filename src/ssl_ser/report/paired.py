"""Intervals of a paired difference in UA: per fold over utterances, and over folds.

A fine-tuned model and a probe scored on the same test utterances are paired:

- **per fold**, a paired percentile bootstrap over the fold's test utterances:
  each resample draws utterances with replacement and scores *both* models on
  the same draw, so the interval is that of UA(fine-tuned) − UA(probe) on
  utterances like these. Drawing utterances with replacement draws each
  (reference, fine-tuned prediction, probe prediction) triple with its
  observed frequency, so the resampled triples are drawn as one multinomial
  over the observed triples (as :func:`ssl_ser.classify.metrics.bootstrap_ua`
  does for one model);
- **over folds**, a Student t-interval of the mean per-fold difference (n − 1
  degrees of freedom): the folds' speakers are the unit that varies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95


def paired_bootstrap(
    true: Sequence[str],
    first: Sequence[str],
    second: Sequence[str],
    classes: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile interval of UA(first) − UA(second) over utterances resampled together.

    UA is the mean recall over the classes present in a resample's references.
    NaN when there is nothing to resample or a label is not one of `classes`.
    """
    index = {name: i for i, name in enumerate(classes)}
    k = len(classes)
    codes = [np.array([index.get(str(x), -1) for x in column]) for column in (true, first, second)]
    n = len(codes[0])
    if n == 0 or n_boot <= 0 or any((c < 0).any() for c in codes):
        return float("nan"), float("nan")
    joint = (codes[0] * k + codes[1]) * k + codes[2]
    observed = np.bincount(joint, minlength=k**3)
    filled = np.flatnonzero(observed)
    draws = np.random.default_rng(seed).multinomial(n, observed[filled] / n, size=n_boot)
    counts = np.zeros((n_boot, k**3), dtype=np.int64)
    counts[:, filled] = draws
    counts = counts.reshape(n_boot, k, k, k)  # (resample, reference, first, second)
    difference = _ua(counts.sum(axis=3)) - _ua(counts.sum(axis=2))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(difference, [tail, 100 - tail])
    return float(low), float(high)


def _ua(confusions: np.ndarray) -> np.ndarray:
    """UA of each (resample, reference, prediction) confusion matrix."""
    support = confusions.sum(axis=2)
    hits = np.einsum("bii->bi", confusions)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
    return np.nanmean(recall, axis=1)


def t_interval(differences: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student t-interval of the mean of per-fold differences (NaN with fewer than 2 folds)."""
    from scipy import stats

    values = np.asarray(differences, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def matched(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame | None:
    """The two models' predictions of one fold side by side (``true``, ``first``, ``second``).

    None unless both scored exactly the same utterances with the same references.
    """
    if first.empty or second.empty or "utt_id" not in first or "utt_id" not in second:
        return None
    keys = ["utt_id", "corpus"] if "corpus" in first and "corpus" in second else ["utt_id"]
    if first.duplicated(keys).any() or second.duplicated(keys).any() or len(first) != len(second):
        return None
    both = first[[*keys, "true", "pred"]].merge(
        second[[*keys, "true", "pred"]], on=keys, suffixes=("", "_second")
    )
    if len(both) != len(first) or not (both["true"] == both["true_second"]).all():
        return None
    return pd.DataFrame(
        {"true": both["true"], "first": both["pred"], "second": both["pred_second"]}
    )
