"""Intervals of a paired difference in UA: per fold over utterances, and over folds.

A fine-tuned model and a probe scored on the same test utterances are paired:
per fold by :func:`ssl_ser.classify.compare.paired_bootstrap` (both models
scored on the same within-speaker resamples, as ``ser compare``), and over folds
by a Student t-interval of the mean per-fold difference, since the folds'
speakers are the unit that varies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ssl_ser.classify import compare

LEVEL = 0.95


def fold_interval(
    both: pd.DataFrame, classes: Sequence[str], *, n_boot: int, seed: int
) -> tuple[float, float]:
    """Paired bootstrap interval of UA(first) − UA(second) on one fold's matched predictions.

    `both` is :func:`matched`'s frame. NaN when there is nothing to resample or a
    label is not one of `classes`.
    """
    index = {name: i for i, name in enumerate(classes)}
    codes = [both[c].map(index) for c in ("true", "first", "second")]
    if both.empty or n_boot <= 0 or any(c.isna().any() for c in codes):
        return float("nan"), float("nan")
    true, first, second = (c.to_numpy(dtype=np.int64) for c in codes)
    strata = compare.strata_codes(both["stratum"].to_numpy())
    paired = compare.paired_bootstrap(
        true, first, second, strata, len(classes), n_boot=n_boot, seed=seed, level=LEVEL
    )
    return paired.low, paired.high


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

    ``stratum`` is the speaker where the first model's predictions store one, else
    one stratum for all. None unless both scored exactly the same utterances with
    the same references.
    """
    if first.empty or second.empty or "utt_id" not in first or "utt_id" not in second:
        return None
    keys = ["utt_id", "corpus"] if "corpus" in first and "corpus" in second else ["utt_id"]
    if first.duplicated(keys).any() or second.duplicated(keys).any() or len(first) != len(second):
        return None
    speaker = ["speaker"] if "speaker" in first else []
    both = first[[*keys, "true", "pred", *speaker]].merge(
        second[[*keys, "true", "pred"]], on=keys, suffixes=("", "_second")
    )
    if len(both) != len(first) or not (both["true"] == both["true_second"]).all():
        return None
    return pd.DataFrame(
        {
            "true": both["true"],
            "first": both["pred"],
            "second": both["pred_second"],
            "stratum": both["speaker"].astype(str) if speaker else "all",
        }
    )
