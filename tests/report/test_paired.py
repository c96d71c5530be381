"""Intervals of a paired UA difference: per fold over utterances, and over folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from ssl_ser.report.paired import matched, paired_bootstrap, t_interval

CLASSES = ["angry", "happy", "neutral", "sad"]


def labelled(n: int, seed: int, accuracy: tuple[float, float]):
    rng = np.random.default_rng(seed)
    true = rng.choice(CLASSES, n)
    out = [true]
    for hit in accuracy:
        out.append(np.where(rng.random(n) < hit, true, rng.choice(CLASSES, n)))
    return out


def ua_of_draws(true: np.ndarray, pred: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """UA (mean recall over the classes present) of every resample, the textbook way."""
    recalls = []
    for label in CLASSES:
        support = (true[draws] == label).sum(1)
        hits = ((true[draws] == label) & (pred[draws] == label)).sum(1)
        recalls.append(np.where(support > 0, hits / np.maximum(support, 1), np.nan))
    return np.nanmean(recalls, axis=0)


def test_equal_and_opposite_models_give_degenerate_intervals():
    true, first, _ = labelled(60, 0, (0.7, 0.0))
    assert paired_bootstrap(true, first, first, CLASSES, n_boot=200, seed=0) == (0.0, 0.0)
    assert paired_bootstrap(true, true, np.roll(true, 1) + "x", CLASSES, n_boot=50, seed=0) == (
        pytest.approx(np.nan, nan_ok=True),
        pytest.approx(np.nan, nan_ok=True),
    )  # a label outside the classes: no interval
    wrong = np.array([CLASSES[(CLASSES.index(t) + 1) % 4] for t in true])
    assert paired_bootstrap(true, true, wrong, CLASSES, n_boot=200, seed=0) == (1.0, 1.0)


def test_the_interval_matches_resampling_utterances_by_index():
    true, first, second = labelled(120, 1, (0.75, 0.55))
    low, high = paired_bootstrap(true, first, second, CLASSES, n_boot=4000, seed=3)
    rng = np.random.default_rng(9)
    draws = rng.integers(0, len(true), (2000, len(true)))  # one draw of utterances for both
    differences = ua_of_draws(true, first, draws) - ua_of_draws(true, second, draws)
    expected = np.percentile(differences, [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(expected), abs=0.03)
    observed = balanced_accuracy_score(true, first) - balanced_accuracy_score(true, second)
    assert low < observed < high
    # the same inputs in another order and the same seed: the same interval
    order = np.random.default_rng(5).permutation(len(true))
    again = paired_bootstrap(true[order], first[order], second[order], CLASSES, n_boot=4000, seed=3)
    assert again == pytest.approx((low, high))


def test_t_interval_over_folds():
    values = [0.02, -0.05, 0.04, 0.01, -0.01]
    low, high = t_interval(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert (low, high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert np.isnan(t_interval([0.1])[0])


def test_predictions_pair_only_on_the_same_utterances():
    first = pd.DataFrame({"utt_id": ["a", "b", "c"], "true": ["x", "y", "x"], "pred": list("xxy")})
    second = first.iloc[::-1].assign(pred=["y", "y", "y"])
    both = matched(first, second)
    assert list(both["true"]) == ["x", "y", "x"]
    assert list(both["first"]) == ["x", "x", "y"] and list(both["second"]) == ["y", "y", "y"]
    assert matched(first, second.iloc[:2]) is None
    assert matched(first, second.assign(utt_id=["a", "b", "z"])) is None
    assert matched(first, second.assign(true=["x", "x", "x"])) is None
