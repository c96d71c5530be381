"""Intervals of a paired UA difference: per fold over utterances, and over folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from ssl_ser.classify import compare
from ssl_ser.report.paired import fold_interval, matched, t_interval

CLASSES = ["angry", "happy", "neutral", "sad"]


def labelled(n: int, seed: int, accuracy: tuple[float, float]):
    rng = np.random.default_rng(seed)
    true = rng.choice(CLASSES, n)
    out = [true]
    for hit in accuracy:
        out.append(np.where(rng.random(n) < hit, true, rng.choice(CLASSES, n)))
    return out


def frame(true, first, second, stratum="all") -> pd.DataFrame:
    return pd.DataFrame({"true": true, "first": first, "second": second, "stratum": stratum})


def test_equal_and_opposite_models_give_degenerate_intervals():
    true, first, _ = labelled(60, 0, (0.7, 0.0))
    same = frame(true, first, first)
    assert fold_interval(same, CLASSES, n_boot=200, seed=0) == (0.0, 0.0)
    wrong = np.array([CLASSES[(CLASSES.index(t) + 1) % 4] for t in true])
    assert fold_interval(frame(true, true, wrong), CLASSES, n_boot=200, seed=0) == (1.0, 1.0)
    outside = frame(true, true, np.char.add(wrong.astype(str), "x"))
    assert np.isnan(fold_interval(outside, CLASSES, n_boot=50, seed=0)).all()


def test_the_fold_interval_is_ser_compares_paired_bootstrap_within_speakers():
    true, first, second = labelled(120, 1, (0.75, 0.55))
    speakers = np.repeat(["s1", "s2", "s3"], 40)
    low, high = fold_interval(frame(true, first, second, speakers), CLASSES, n_boot=500, seed=3)
    codes = {name: i for i, name in enumerate(CLASSES)}
    expected = compare.paired_bootstrap(
        np.array([codes[t] for t in true]),
        np.array([codes[t] for t in first]),
        np.array([codes[t] for t in second]),
        compare.strata_codes(speakers),
        4,
        n_boot=500,
        seed=3,
    )
    assert (low, high) == (expected.low, expected.high)
    observed = balanced_accuracy_score(true, first) - balanced_accuracy_score(true, second)
    assert low < observed < high


def test_t_interval_over_folds():
    values = [0.02, -0.05, 0.04, 0.01, -0.01]
    low, high = t_interval(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert (low, high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert np.isnan(t_interval([0.1])[0])


def test_predictions_pair_only_on_the_same_utterances():
    first = pd.DataFrame({"utt_id": ["a", "b", "c"], "true": ["x", "y", "x"], "pred": list("xxy")})
    second = first.iloc[::-1].assign(pred=["y", "y", "y"])
    both = matched(first.assign(speaker=["s1", "s1", "s2"]), second)
    assert list(both["stratum"]) == ["s1", "s1", "s2"]
    assert set(matched(first, second)["stratum"]) == {"all"}
    assert list(both["true"]) == ["x", "y", "x"]
    assert list(both["first"]) == ["x", "x", "y"] and list(both["second"]) == ["y", "y", "y"]
    assert matched(first, second.iloc[:2]) is None
    assert matched(first, second.assign(utt_id=["a", "b", "z"])) is None
    assert matched(first, second.assign(true=["x", "x", "x"])) is None
