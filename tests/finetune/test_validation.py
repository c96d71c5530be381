"""Validation speakers of a fine-tune fold: the share closest to --val-fraction, per seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ssl_ser.finetune.validation import closest_speaker_split

# one large speaker first: "add speakers until the share is passed" overshoots with it
COUNTS = {"s0": 99, "s1": 40, "s2": 41, "s3": 38, "s4": 45, "s5": 52, "s6": 47, "s7": 44, "s8": 51}


def rows(counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    groups = np.concatenate([[name] * n for name, n in counts.items()])
    return groups, np.arange(len(groups)) % 4


def best_share(counts: dict[str, int], fraction: float) -> float:
    """The closest share any proper, non-empty speaker subset reaches (brute force)."""
    total = sum(counts.values())
    shares = [
        sum(subset) / total
        for k in range(1, len(counts))
        for subset in itertools.combinations(counts.values(), k)
    ]
    return min(shares, key=lambda share: abs(share - fraction))


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.2, 0.33, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_share_is_the_closest_a_speaker_set_reaches(fraction, seed):
    groups, labels = rows(COUNTS)
    split = closest_speaker_split(groups, labels, fraction, seed)
    assert abs(split.share - fraction) == pytest.approx(
        abs(best_share(COUNTS, fraction) - fraction)
    )
    assert sorted([*split.fit, *split.val]) == list(range(len(groups)))
    fit_speakers, val_speakers = set(groups[split.fit]), set(groups[split.val])
    assert fit_speakers and val_speakers and not fit_speakers & val_speakers
    assert split.val_speakers == len(val_speakers) and split.speakers == len(COUNTS)


def test_the_split_is_the_same_per_seed_and_differs_between_seeds():
    groups, labels = rows({f"s{i}": 20 for i in range(10)})
    first = closest_speaker_split(groups, labels, 0.2, seed=3)
    again = closest_speaker_split(groups, labels, 0.2, seed=3)
    np.testing.assert_array_equal(first.val, again.val)
    chosen = {
        tuple(sorted(set(groups[closest_speaker_split(groups, labels, 0.2, s).val])))
        for s in range(8)
    }
    assert len(chosen) > 1  # the seed, not the speaker names, picks among equal shares


def test_the_description_names_speakers_rows_and_share():
    groups, labels = rows(COUNTS)
    split = closest_speaker_split(groups, labels, 0.1, seed=0)
    assert set(groups[split.val]) == {"s4"}  # 45 rows of 457, the closest to 45.7
    assert split.describe(0.1) == "1 of 9 speakers, 45 of 457 rows (9.8%; --val-fraction 0.1)"


def test_one_speaker_splits_rows_per_label():
    groups, labels = rows({"only": 40})
    split = closest_speaker_split(groups, labels, 0.25, seed=0)
    assert len(split.val) == 8 and split.speakers == 1
    for label in range(4):
        assert np.sum(labels[split.val] == label) == 2
