"""Paired statistics over predictions, against known answers and brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from ssl_ser.classify import compare
from ssl_ser.errors import ConfigError

K = 4


def synthetic(
    seed: int, acc_a: float, acc_b: float, speakers: int = 10, per: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """References and two cells' predictions: each right with its accuracy, per speaker harder."""
    rng = np.random.default_rng(seed)
    speaker = np.repeat(np.arange(speakers), per)
    true = rng.integers(0, K, len(speaker))
    hardness = rng.normal(0, 0.1, speakers)[speaker]  # shared: the pairing removes it

    def predict(accuracy: float) -> np.ndarray:
        hit = rng.random(len(true)) < np.clip(accuracy + hardness, 0, 1)
        return np.where(hit, true, (true + rng.integers(1, K, len(true))) % K)

    return true, predict(acc_a), predict(acc_b), speaker


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_ua_rows_equals_balanced_accuracy() -> None:
    true, a, b, _ = synthetic(1, 0.6, 0.4)
    got = compare.ua_rows(np.stack([true, true]), np.stack([a, b]), K)
    assert got == pytest.approx(
        [balanced_accuracy_score(true, a), balanced_accuracy_score(true, b)]
    )
    # a class absent from the references does not count (as scikit-learn's)
    keep = true != 3
    assert compare.ua_rows(true[keep], a[keep], K)[0] == pytest.approx(
        balanced_accuracy_score(true[keep], a[keep])
    )


def test_resamples_stay_within_speakers_and_ignore_the_block_size() -> None:
    speaker = np.array([2, 0, 2, 1, 0, 2, 2, 1])
    codes = compare.strata_codes(speaker)
    small = np.concatenate(list(compare.resample_blocks(codes, 7, seed=3, block=2)))
    large = np.concatenate(list(compare.resample_blocks(codes, 7, seed=3)))
    assert np.array_equal(small, large)
    for index in large:
        drawn = np.sort(speaker[index])
        assert np.array_equal(drawn, np.sort(speaker))  # every speaker keeps its count


def brute_force_interval(
    true: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    speaker: np.ndarray,
    n_boot: int,
    seed: int,
) -> tuple[float, float]:
    """The documented draw, one resample and one utterance at a time, scored by scikit-learn."""
    rng = np.random.default_rng(seed)
    members = {s: [i for i in range(len(true)) if speaker[i] == s] for s in sorted(set(speaker))}
    deltas = []
    for _ in range(n_boot):
        u = rng.random(len(true))
        chosen, position = [], 0
        for utterances in members.values():
            for _ in utterances:
                chosen.append(utterances[int(np.floor(u[position] * len(utterances)))])
                position += 1
        t, pa, pb = true[chosen], a[chosen], b[chosen]
        deltas.append(balanced_accuracy_score(t, pa) - balanced_accuracy_score(t, pb))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def brute_force_permutation(
    true: np.ndarray, a: np.ndarray, b: np.ndarray, n_perm: int, seed: int
) -> float:
    rng = np.random.default_rng(seed)
    observed = abs(balanced_accuracy_score(true, a) - balanced_accuracy_score(true, b))
    extreme = 0
    for _ in range(n_perm):
        swap = rng.random(len(true)) < 0.5
        pa, pb = np.where(swap, b, a), np.where(swap, a, b)
        diff = balanced_accuracy_score(true, pa) - balanced_accuracy_score(true, pb)
        extreme += abs(diff) >= observed - 1e-12
    return (1 + extreme) / (1 + n_perm)


def test_paired_interval_and_p_value_equal_brute_force_loops() -> None:
    true, a, b, speaker = synthetic(5, 0.6, 0.5, speakers=4, per=15)
    found = compare.paired_bootstrap(
        true, a, b, compare.strata_codes(speaker), K, n_boot=300, seed=11
    )
    low, high = brute_force_interval(true, a, b, speaker, n_boot=300, seed=11)
    assert (found.low, found.high) == pytest.approx((low, high), abs=1e-12)
    assert found.p == pytest.approx(brute_force_permutation(true, a, b, 300, 11))
    assert found.delta == pytest.approx(
        balanced_accuracy_score(true, a) - balanced_accuracy_score(true, b)
    )
    assert found.n == len(true)


SEEDS = 300


def test_equal_information_is_not_separated_at_the_stated_level() -> None:
    """Two cells with the same accuracy: at most 5% separated (plus two Monte Carlo SEs)."""
    separated = 0
    for seed in range(SEEDS):
        true, a, b, speaker = synthetic(seed, 0.6, 0.6)
        result = compare.paired_bootstrap(
            true, a, b, compare.strata_codes(speaker), K, n_boot=200, seed=seed
        )
        separated += result.p < 0.05
    margin = 2 * np.sqrt(0.05 * 0.95 / SEEDS)
    assert 1 - separated / SEEDS >= 0.95 - margin


def test_a_ten_point_gap_is_separated() -> None:
    for seed in range(10):
        true, a, b, speaker = synthetic(seed, 0.6, 0.5, per=100)
        result = compare.paired_bootstrap(
            true, a, b, compare.strata_codes(speaker), K, n_boot=300, seed=seed
        )
        assert result.p < 0.05
        assert 0 < result.low < result.delta < result.high


def test_holm_equals_a_hand_computation() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    adjusted = compare.holm([0.01, 0.04, np.nan, 0.03, 0.005])
    assert adjusted[[0, 1, 3, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[2])
    assert compare.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])


def test_sign_flip_test_enumerates_the_patterns() -> None:
    # all three folds favour a: only all-plus and all-minus reach |mean| 2 -> 2 / 8
    assert compare.sign_flip_test([1.0, 2.0, 3.0]) == pytest.approx(0.25)
    # five folds can never reach 0.05
    assert compare.sign_flip_test([0.1] * 5) == pytest.approx(2 / 32)
    # sums of +-1 +-(-1) +-2: 2, -2, 4, 0, 0, -4, 2, -2; |sum| >= 2 in 6 of 8
    assert compare.sign_flip_test([1.0, -1.0, 2.0]) == pytest.approx(0.75)
    assert np.isnan(compare.sign_flip_test([np.nan]))


def test_argmax_shares_split_ties() -> None:
    matrix = np.array([[0.5, 0.7, 0.6], [0.8, 0.8, 0.1], [0.2, 0.3, 0.9], [0.1, 0.9, 0.0]])
    assert compare.argmax_shares(matrix) == pytest.approx([0.125, 0.625, 0.25])


def test_versus_best_marks_layers_and_corrects_for_the_family() -> None:
    rng = np.random.default_rng(0)
    n = 800
    true = rng.integers(0, K, n)
    speaker = np.repeat(np.arange(8), n // 8)
    accuracies = [0.4, 0.7, 0.69, 0.55]
    preds = np.stack([np.where(rng.random(n) < acc, true, (true + 1) % K) for acc in accuracies])
    found = compare.versus_best(
        true, preds, compare.strata_codes(speaker), speaker % 4, K, n_boot=300, seed=0
    )
    ua = [balanced_accuracy_score(true, p) for p in preds]
    assert found.best == int(np.argmax(ua))
    assert found.ua == pytest.approx(ua)
    raw = np.array([c.p for c in found.comparisons])
    assert found.p_holm == pytest.approx(compare.holm(raw), nan_ok=True)
    assert found.indistinguishable[1] and found.indistinguishable[2]
    assert not found.indistinguishable[0] and not found.indistinguishable[3]
    assert found.shares.sum() == pytest.approx(1.0)
    assert found.shares[[1, 2]].sum() > 0.9
    assert np.isnan(found.p_folds[found.best])


def test_versus_best_refuses_a_single_cell() -> None:
    with pytest.raises(ConfigError, match="at least two cells.*got 1 cell"):
        compare.versus_best(np.zeros(3, int), np.zeros((1, 3), int), np.zeros(3, int), [0] * 3, K)


def test_group_intervals_equal_balanced_accuracy_per_group() -> None:
    true, a, _, speaker = synthetic(3, 0.6, 0.6, speakers=6, per=30)
    gender = np.where(speaker % 2 == 0, "F", "M")
    rows = compare.group_intervals(true, a, gender, speaker, K, n_boot=200, seed=1)
    assert [r[0] for r in rows] == ["F", "M"]
    for group, n, ua, low, high in rows:
        mask = gender == group
        assert n == mask.sum()
        assert ua == pytest.approx(balanced_accuracy_score(true[mask], a[mask]))
        assert low < ua < high
