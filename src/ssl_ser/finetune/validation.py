"""Validation speakers of a fine-tune fold: the speaker set whose share is closest to asked.

Adding whole speakers in a seeded order until a share is passed can overshoot
far (one large speaker took 22% of a fold's rows for ``--val-fraction 0.1``).
Here the speakers are ordered by the seed, every reachable row count of a
speaker subset is found by a subset-sum over the speakers' row counts, and the
subset closest to the asked share (ties: the smaller) is taken, with at least
one speaker on each side. The same seed and rows give the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_ser.classify.splits import inner_split

# How validation speakers are drawn, recorded in every fine-tune row and cell id: folds
# stored by a run that drew them otherwise ("add speakers until the share is passed")
# are other cells, never skipped as done.
METHOD = "speaker set closest to val_fraction"


@dataclass(frozen=True)
class ValidationSplit:
    """Positions of the fitting and validation rows, and how many speakers each holds."""

    fit: np.ndarray
    val: np.ndarray
    val_speakers: int
    speakers: int

    @property
    def share(self) -> float:
        """Fraction of the training rows held out for validation."""
        return len(self.val) / max(1, len(self.fit) + len(self.val))

    def describe(self, fraction: float) -> str:
        """``2 of 8 speakers, 46 of 457 rows (10.1%; --val-fraction 0.1)``."""
        return (
            f"{self.val_speakers} of {self.speakers} speakers, {len(self.val)} of "
            f"{len(self.fit) + len(self.val)} rows ({self.share:.1%}; --val-fraction {fraction:g})"
        )


def closest_speaker_split(groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    """Split rows into (fit, validation) by whole speakers, validation share closest to `fraction`.

    With fewer than 2 speakers the rows are split per label, as
    :func:`~ssl_ser.classify.splits.inner_split` does.
    """
    groups = np.asarray(groups)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < 2:
        fit, val = inner_split(groups, labels, fraction, seed)
        return ValidationSplit(fit, val, int(len(val) > 0), len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    chosen = _closest_subset([int(counts[i]) for i in order], fraction * len(groups))
    is_val = np.isin(inverse, order[chosen])
    return ValidationSplit(np.flatnonzero(~is_val), np.flatnonzero(is_val), len(chosen), len(names))


def _closest_subset(counts: list[int], target: float) -> list[int]:
    """Positions into `counts` of a proper, non-empty subset whose sum is closest to `target`.

    Reachable sums are bitsets (bit s set: some subset of the first i counts sums
    to s); the subset is read back from the last count to the first, leaving a
    count out whenever the sum is reachable without it.
    """
    reach = [1]
    for count in counts:
        reach.append(reach[-1] | (reach[-1] << count))
    total = sum(counts)
    bits = bin(reach[-1])[:1:-1]  # bits[s] == "1": some subset sums to s
    sums = [s for s in range(1, min(total, len(bits))) if bits[s] == "1"]
    best = min(sums, key=lambda s: (abs(s - target), s))
    chosen = []
    for i in range(len(counts) - 1, -1, -1):
        if not reach[i] >> best & 1:
            chosen.append(i)
            best -= counts[i]
    return sorted(chosen)
