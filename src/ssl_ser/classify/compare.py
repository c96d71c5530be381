"""Paired statistics over stored predictions: paired bootstrap, fold test, Holm, argmax shares.

Pure functions over arrays of class indices, so the report, ``ser compare`` and
the tests share one implementation.

- **Resampling within speakers** (a stratified bootstrap, Efron & Tibshirani 1993,
  ch. 6 and 13): a resample keeps every stratum (speaker) with its number of test
  utterances and draws that many of the speaker's utterances with replacement.
  Precisely: utterances are ordered by stratum (stable); per resample one uniform
  ``u`` is drawn per position (``rng.random((n_boot, n))`` in blocks of rows) and
  the position of stratum ``s`` takes the utterance ``start[s] + floor(u *
  count[s])`` of that order. The test speakers stay fixed, so the interval is
  conditional on them; between-speaker variation is what the fold-level test
  looks at (folds hold different speakers).
- **Paired**: every cell compared is scored on the same resampled utterances, so
  the resampled difference keeps the pairing (``delta* = UA*_a - UA*_b``).
- **Interval**: percentile interval of the resampled differences (the size of
  the difference and its uncertainty).
- **Utterance-level test**: a paired permutation (approximate randomisation) test:
  the two cells' predictions of each utterance are swapped at random and the
  difference in UA recomputed; it keeps its level exactly, where the percentile
  bootstrap's p-value runs slightly over it (5.7% against 5.3% of 300 null seeds
  of 400 utterances, measured). This p-value decides "distinguishable".
- **Fold-level test**: an exact sign-flip permutation test of the mean per-fold
  UA difference (all ``2^k`` sign patterns up to :data:`EXACT_FOLDS` folds, else
  a seeded Monte Carlo that counts the observed pattern). With ``k`` folds its
  smallest p-value is ``2 / 2^k``: 5 folds can never reach 0.05.
- **Holm (1979)** step-down adjustment for comparing several cells with one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ssl_ser.errors import ConfigError

BLOCK = 200  # resamples scored at once (memory: BLOCK x utterances indices)
EXACT_FOLDS = 12  # up to this many folds the sign-flip test enumerates every pattern
MONTE_CARLO_FLIPS = 20_000
LEVEL = 0.95


def strata_codes(strata: Sequence[object] | np.ndarray) -> np.ndarray:
    """Integer codes 0..S-1 of the strata, in order of first sorted value."""
    _, codes = np.unique(np.asarray(strata).astype(str), return_inverse=True)
    return codes.astype(np.int64)


def resample_blocks(
    codes: np.ndarray, n_boot: int, seed: int, block: int = BLOCK
) -> Iterator[np.ndarray]:
    """Blocks of (resamples, n) utterance indices, each resample drawn within strata.

    See the module docstring for the exact draw; the same codes, ``n_boot`` and
    seed always give the same indices whatever the block size.
    """
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_codes = codes[order]
    base, size = starts[sorted_codes], counts[sorted_codes]
    rng = np.random.default_rng(seed)
    for first in range(0, n_boot, block):
        u = rng.random((min(block, n_boot - first), len(codes)))
        yield order[base + np.floor(u * size).astype(np.int64)]


def ua_rows(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """UA of every row of (rows, n) reference and predicted class indices.

    UA is the mean recall over the classes present in the row's references
    (scikit-learn's ``balanced_accuracy_score``).
    """
    true, pred = np.atleast_2d(true), np.atleast_2d(pred)
    rows, k = true.shape[0], n_classes
    offsets = (np.arange(rows) * k)[:, None]
    support = np.bincount((true + offsets).ravel(), minlength=rows * k).reshape(rows, k)
    hit = np.where(true == pred, true + offsets, -1).ravel()
    hits = np.bincount(hit[hit >= 0], minlength=rows * k).reshape(rows, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    return np.nanmean(recall, axis=1)


def bootstrap_ua_matrix(
    true: np.ndarray,
    preds: np.ndarray,
    strata: np.ndarray,
    n_classes: int,
    *,
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """(n_boot, cells) UA of every cell on the same within-stratum resamples.

    `true` holds the (n,) reference class indices, `preds` the (cells, n) predicted
    ones of each cell on the same utterances, `strata` the (n,) stratum (speaker)
    codes from :func:`strata_codes`.
    """
    preds = np.atleast_2d(preds)
    n, cells = len(true), len(preds)
    onehot = np.eye(n_classes)[true]
    hit_columns = (onehot[:, None, :] * (preds == true).T[:, :, None]).reshape(n, -1)
    out = []
    for index in resample_blocks(strata, n_boot, seed):
        rows = len(index)
        offsets = (np.arange(rows) * n)[:, None]
        counts = np.bincount((index + offsets).ravel(), minlength=rows * n).reshape(rows, n)
        counts = counts.astype(float)  # how often each utterance is drawn
        support = (counts @ onehot)[:, None, :]
        hits = (counts @ hit_columns).reshape(rows, cells, n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
        out.append(np.nanmean(recall, axis=2))
    return np.concatenate(out) if out else np.empty((0, cells))


@dataclass(frozen=True)
class Paired:
    """A paired difference ``UA(a) - UA(b)``: bootstrap interval, permutation p-value."""

    ua_a: float
    ua_b: float
    delta: float
    low: float
    high: float
    p: float
    n: int


def paired_from_resamples(
    ua_a: float, ua_b: float, resampled: np.ndarray, p: float, n: int, level: float = LEVEL
) -> Paired:
    """The :class:`Paired` summary of observed UAs, (n_boot,) resampled differences and p."""
    if len(resampled) == 0:
        return Paired(ua_a, ua_b, ua_a - ua_b, np.nan, np.nan, p, n)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Paired(ua_a, ua_b, ua_a - ua_b, float(low), float(high), p, n)


def paired_bootstrap(
    true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    strata: np.ndarray,
    n_classes: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
) -> Paired:
    """Paired difference in UA of two cells on the same utterances, resampled within strata.

    The interval comes from ``n_boot`` within-stratum resamples, the p-value from
    as many permutations (:func:`paired_permutation`), both seeded with `seed`.
    """
    preds = np.stack([pred_a, pred_b])
    observed = ua_rows(np.stack([true, true]), preds, n_classes)
    matrix = bootstrap_ua_matrix(true, preds, strata, n_classes, n_boot=n_boot, seed=seed)
    p = paired_permutation(true, pred_a, pred_b, n_classes, n_perm=n_boot, seed=seed)
    resampled = matrix[:, 0] - matrix[:, 1]
    return paired_from_resamples(
        float(observed[0]), float(observed[1]), resampled, p, len(true), level
    )


def sign_flip_test(differences: Sequence[float], *, seed: int = 0) -> float:
    """Two-sided p-value of an exact (or Monte Carlo) sign-flip test of the mean difference.

    Under the null the per-fold differences are symmetric about zero; the
    p-value is the share of sign patterns whose mean is at least as far from
    zero as the observed one. NaN differences (a fold one cell lacks) are dropped.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan")
    observed = abs(d.mean())
    if len(d) <= EXACT_FOLDS:
        patterns = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
        means = np.abs(patterns @ d) / len(d)
        return float(np.mean(means >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(MONTE_CARLO_FLIPS, len(d)))
    means = np.abs(signs @ d) / len(d)
    return float((1 + np.sum(means >= observed - 1e-12)) / (1 + MONTE_CARLO_FLIPS))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values (NaN stays NaN, outside the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    known = np.flatnonzero(~np.isnan(p))
    m = len(known)
    order = known[np.argsort(p[known], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def argmax_shares(matrix: np.ndarray) -> np.ndarray:
    """Per column, the share of rows (resamples) in which it is best (ties split evenly)."""
    if len(matrix) == 0:
        return np.full(matrix.shape[1], np.nan)
    best = matrix == np.nanmax(matrix, axis=1, keepdims=True)
    return (best / best.sum(axis=1, keepdims=True)).mean(axis=0)


@dataclass(frozen=True)
class VersusBest:
    """Every cell of a family against the family's best: differences, tests, argmax shares."""

    ua: np.ndarray
    best: int
    comparisons: list[Paired]
    p_holm: np.ndarray
    p_folds: np.ndarray
    shares: np.ndarray
    indistinguishable: np.ndarray


def versus_best(
    true: np.ndarray,
    preds: np.ndarray,
    strata: np.ndarray,
    folds: np.ndarray,
    n_classes: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> VersusBest:
    """Compare every cell (row of `preds`) with the best one on the same utterances.

    The best is the cell of highest pooled UA; each other cell gets the paired
    difference (best minus it) with its bootstrap interval, the permutation
    p-value Holm-adjusted over the family, and the fold-level sign-flip p-value.
    A cell is *indistinguishable* from the best when its Holm-adjusted p-value is
    at least `alpha` (the best itself is). The best is chosen on the same
    predictions, so this set tends to be too small; the argmax shares show how
    stable the choice is.

    Raises:
        ConfigError: fewer than two cells or no utterances.
    """
    preds = np.atleast_2d(preds)
    if len(preds) < 2 or preds.shape[1] == 0:
        raise ConfigError(
            f"comparing with the best needs at least two cells on shared utterances; got "
            f"{len(preds)} cell(s) on {preds.shape[1]} utterance(s)"
        )
    ua = ua_rows(np.broadcast_to(true, preds.shape), preds, n_classes)
    best = int(np.nanargmax(ua))
    matrix = bootstrap_ua_matrix(true, preds, strata, n_classes, n_boot=n_boot, seed=seed)
    fold_ua = per_fold_ua(true, preds, folds, n_classes)
    comparisons, p_folds = [], np.full(len(preds), np.nan)
    p_values = permutation_p_values(true, preds, best, n_classes, n_perm=n_boot, seed=seed)
    for i in range(len(preds)):
        diff = matrix[:, best] - matrix[:, i]
        if i != best:
            p_folds[i] = sign_flip_test(fold_ua[:, best] - fold_ua[:, i], seed=seed)
        comparisons.append(paired_from_resamples(ua[best], ua[i], diff, p_values[i], len(true)))
    raw = np.array([c.p for c in comparisons])
    p_holm = holm(raw)
    indistinguishable = np.where(np.isnan(p_holm), True, p_holm >= alpha)
    return VersusBest(
        ua, best, comparisons, p_holm, p_folds, argmax_shares(matrix), indistinguishable
    )


def per_fold_ua(
    true: np.ndarray, preds: np.ndarray, folds: np.ndarray, n_classes: int
) -> np.ndarray:
    """(folds, cells) UA of every cell on every fold's utterances (folds in sorted order)."""
    preds = np.atleast_2d(preds)
    folds = np.asarray(folds).astype(str)
    rows = []
    for fold in np.unique(folds):
        mask = folds == fold
        rows.append(
            ua_rows(np.broadcast_to(true[mask], preds[:, mask].shape), preds[:, mask], n_classes)
        )
    return np.array(rows).reshape(-1, len(preds))


def group_intervals(
    true: np.ndarray,
    pred: np.ndarray,
    groups: np.ndarray,
    strata: np.ndarray,
    n_classes: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
) -> list[tuple[str, int, float, float, float]]:
    """Per group: (group, utterances, UA, interval low, high), resampled within strata.

    A group's UA is the mean recall over the classes present in its own
    references, its interval the percentile bootstrap of its utterances resampled
    within their strata (speakers). Groups in sorted order.
    """
    groups = np.asarray(groups).astype(str)
    out = []
    tail = 100 * (1 - level) / 2
    for group in np.unique(groups):
        mask = groups == group
        t, p = true[mask], pred[mask]
        ua = float(ua_rows(t, p, n_classes)[0])
        codes = strata_codes(np.asarray(strata)[mask])
        resampled = bootstrap_ua_matrix(t, p, codes, n_classes, n_boot=n_boot, seed=seed)[:, 0]
        low, high = np.percentile(resampled, [tail, 100 - tail]) if n_boot else (np.nan, np.nan)
        out.append((str(group), int(mask.sum()), ua, float(low), float(high)))
    return out


def paired_permutation(
    true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_classes: int,
    *,
    n_perm: int = 1000,
    seed: int = 0,
) -> float:
    """Two-sided p-value of the paired permutation (approximate randomisation) test of ΔUA.

    Under the null the two cells' predictions of each utterance are exchangeable;
    every permutation swaps them on a random half of the utterances (a fair coin
    per utterance, ``rng.random((block, n)) < 0.5``) and recomputes the
    difference in UA. The p-value counts the observed assignment, ``(1 + #{|Δ*| >=
    |Δ|}) / (1 + n_perm)``, so it is never 0 and the test keeps its level (Noreen
    1989; Dror et al. 2018).
    """
    found = permutation_p_values(
        true, np.stack([pred_a, pred_b]), 0, n_classes, n_perm=n_perm, seed=seed
    )
    return float(found[1])


def permutation_p_values(
    true: np.ndarray,
    preds: np.ndarray,
    reference: int,
    n_classes: int,
    *,
    n_perm: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The :func:`paired_permutation` p-value of every cell against cell `reference` (NaN there).

    The references are fixed, so a difference in UA is linear in which cell got
    each utterance right: ``Δ = Σ_i (right_ref,i - right_i) / (K · n_class(i))``
    over the K classes present; a swap flips utterance i's term. Every cell is
    tested on the same swaps.
    """
    preds = np.atleast_2d(preds)
    support = np.bincount(true, minlength=n_classes).astype(float)
    weight = 1.0 / (support[true] * np.count_nonzero(support))
    right = (preds == true).astype(float)
    terms = (right[reference] - right) * weight  # (cells, n)
    observed = np.abs(terms.sum(axis=1))
    rng = np.random.default_rng(seed)
    extreme = np.zeros(len(preds))
    for first in range(0, n_perm, BLOCK):
        swap = (rng.random((min(BLOCK, n_perm - first), len(true))) < 0.5).astype(float)
        permuted = terms.sum(axis=1) - 2 * swap @ terms.T  # (block, cells)
        extreme += np.sum(np.abs(permuted) >= observed - 1e-12, axis=0)
    out = (1 + extreme) / (1 + n_perm)
    out[reference] = np.nan
    return out
