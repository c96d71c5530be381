import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
)

from ssl_ser.classify.metrics import bootstrap_ua, encode, score

CLASSES = ("angry", "happy", "sad", "neutral")


def _predictions(seed, n=300, drop_true=None, drop_pred=None):
    rng = np.random.default_rng(seed)
    true = rng.choice(CLASSES, n)
    pred = np.where(rng.random(n) < 0.6, true, rng.choice(CLASSES, n))
    if drop_true:
        keep = true != drop_true
        true, pred = true[keep], pred[keep]
    if drop_pred:
        pred = np.where(pred == drop_pred, CLASSES[0], pred)
    return true, pred


@pytest.mark.parametrize(
    "seed,drop_true,drop_pred",
    [(0, None, None), (1, "sad", None), (2, None, "neutral"), (3, "happy", "happy")],
)
def test_scores_equal_sklearn(seed, drop_true, drop_pred):
    true, pred = _predictions(seed, drop_true=drop_true, drop_pred=drop_pred)
    scores = score(true, pred, CLASSES)
    # sklearn warns when predictions hold a class absent from the reference; same value.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert scores.ua == pytest.approx(balanced_accuracy_score(true, pred))
    assert scores.wa == pytest.approx(accuracy_score(true, pred))
    assert scores.macro_f1 == pytest.approx(f1_score(true, pred, average="macro"))
    np.testing.assert_array_equal(scores.confusion, confusion_matrix(true, pred, labels=CLASSES))
    present = [c for c in CLASSES if c in set(true)]
    recalls = recall_score(true, pred, labels=present, average=None)
    for name, value in zip(present, recalls, strict=True):
        assert scores.recall[name] == pytest.approx(value)
    for name in set(CLASSES) - set(present):
        assert np.isnan(scores.recall[name])


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="calm"):
        score(["angry", "calm"], ["angry", "angry"], CLASSES)


def test_bootstrap_matches_a_loop_over_the_same_resamples():
    true, pred = _predictions(5, n=200)
    t, p = encode(true, CLASSES), encode(pred, CLASSES)
    low, high = bootstrap_ua(t, p, len(CLASSES), n_boot=300, seed=7)
    draws = np.random.default_rng(7).integers(0, len(t), size=(300, len(t)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = [balanced_accuracy_score(t[d], p[d]) for d in draws]
    assert (low, high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
    assert low < balanced_accuracy_score(t, p) < high


def test_bootstrap_interval_narrows_with_more_utterances():
    small = _predictions(6, n=100)
    large = _predictions(6, n=3000)
    widths = []
    for true, pred in (small, large):
        low, high = bootstrap_ua(encode(true, CLASSES), encode(pred, CLASSES), 4, seed=0)
        widths.append(high - low)
    assert widths[1] < widths[0] / 3
