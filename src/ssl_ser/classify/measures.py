"""Probing measures beyond UA: control labellings, speaker probes and online codelength.

Three questions a layer-wise UA curve cannot answer on its own (issue 21):

- **Selectivity** (Hewitt & Liang 2019, control tasks): does the probe find
  emotion in a layer, or could it fit any labelling of the same rows? The
  control target (:func:`control_labels`) permutes each speaker's emotion
  labels among that speaker's utterances (seeded), which keeps the class sizes
  per speaker and overall but cuts the link between audio and label;
  selectivity is probe UA minus control UA.
- **Speaker information**: the speaker target (:func:`retarget`) labels every
  utterance with its speaker and splits utterances, not speakers, into folds
  (a speaker-dependent split by construction).
- **Description length** (Voita & Titov 2020, online/prequential code): how
  many bits it takes to transmit the labels of a fold's training rows given
  the layer, when each block of rows is coded with a probe trained on the rows
  before it (:func:`online_codelength`). Compression is the uniform code
  (``n log2 K``) over the online code: 1 for a layer with no information.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser.errors import ConfigError

EMOTION_TARGET = "emotion"
CONTROL_TARGET = "control"
SPEAKER_TARGET = "speaker"
TARGETS: tuple[str, ...] = (EMOTION_TARGET, CONTROL_TARGET, SPEAKER_TARGET)
# The targets a user asks for; the control target comes with --control.
REQUESTED_TARGETS: tuple[str, ...] = (EMOTION_TARGET, SPEAKER_TARGET)
# The results column naming a cell's target; rows of older folders lack it (emotion).
TARGET_COLUMN = "target"
# Splits that make folds of utterances when every utterance is its own group.
SPEAKER_TARGET_SPLITS: tuple[str, ...] = ("speaker-kfold", "random")

# Voita & Titov (2020): block ends at these fractions of the rows; the first block
# is sent with the uniform code, each next one with a probe fit on all rows before it.
MDL_FRACTIONS: tuple[float, ...] = (
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.0625,
    0.125,
    0.25,
    0.5,
    1.0,
)
# Probabilities are mixed with this share of the uniform distribution, so a class a
# small prefix never saw (or a confident mistake) costs at most log2(K / floor) bits.
MDL_FLOOR = 1e-3

# fit_proba(prefix positions, block positions) -> probabilities (..., block rows, K)
ProbaFit = Callable[[np.ndarray, np.ndarray], np.ndarray]


def control_labels(table: pd.DataFrame, seed: int) -> np.ndarray:
    """Each speaker's labels permuted among that speaker's utterances (seeded).

    Works on utterances (an utterance present in several conditions keeps one
    control label) in (group, utt_id) order, so the labelling depends on the
    seed and the data, not on row order. Class sizes stay the same per group
    and overall.
    """
    utterances = (
        table.drop_duplicates("utt_id")[["utt_id", "group", "label"]]
        .astype(str)
        .sort_values(["group", "utt_id"], kind="stable")
    )
    rng = np.random.default_rng(seed)
    control: dict[str, str] = {}
    for _, rows in utterances.groupby("group", sort=True):
        control.update(zip(rows["utt_id"], rng.permutation(rows["label"].to_numpy()), strict=True))
    return table["utt_id"].astype(str).map(control).to_numpy()


def retarget(dataset: Any, target: str, seed: int, split: str) -> Any:
    """The dataset with the labels (and groups) of `target`; the emotion target unchanged.

    Control: labels from :func:`control_labels`. Speaker: the speaker is the
    label and every utterance its own group, so the folds split utterances and
    each speaker is in training and test (the ``speaker`` and ``gender``
    columns stay the manifest's, as stored with the predictions).

    Raises:
        ConfigError: a speaker target on a split other than those of
            :data:`SPEAKER_TARGET_SPLITS`, or on a corpus without speaker ids.
    """
    if target == EMOTION_TARGET:
        return dataset
    table = dataset.table.copy()
    if target == CONTROL_TARGET:
        table["label"] = control_labels(table, seed)
        return dataclasses.replace(dataset, table=table)
    if split not in SPEAKER_TARGET_SPLITS:
        raise ConfigError(
            f"--target speaker needs speakers in both training and test, so folds of "
            f"utterances: --split {' or '.join(SPEAKER_TARGET_SPLITS)}, not {split!r}"
        )
    unnamed = sorted(c for c, how in dataset.grouping.items() if how != "speaker")
    if unnamed:
        raise ConfigError(
            f"--target speaker: corpus {', '.join(unnamed)} has no speaker ids "
            f"(grouped by {', '.join(dataset.grouping[c] for c in unnamed)})"
        )
    table["label"] = table["group"].astype(str)
    table["group"] = table["utt_id"].astype(str)
    classes = tuple(sorted(table["label"].unique()))
    return dataclasses.replace(dataset, table=table, classes=classes)


def block_ends(n: int, n_classes: int, fractions: Sequence[float] = MDL_FRACTIONS) -> list[int]:
    """Ends of the online code's blocks over `n` rows: ``[t1, t2, ..., n]``, increasing.

    Each end is ``ceil(fraction * n)``; the first block holds at least `n_classes`
    rows (at least one row), and ends that coincide on small data are merged.
    """
    first = min(n, max(int(np.ceil(fractions[0] * n)), n_classes, 1))
    later = {min(n, int(np.ceil(f * n))) for f in fractions[1:]}
    return [first, *sorted(e for e in later | {n} if e > first)]


def mdl_order(positions: np.ndarray, codes: np.ndarray, seed: int) -> np.ndarray:
    """`positions` in the order the online code sends them (seeded shuffle, classes first).

    The first row of every class (in shuffled order) is moved to the front. With
    the first block at least as large as the number of classes, every prefix a
    probe is fit on holds every class, so no later label falls on a class its
    probe has never seen.
    """
    order = np.random.default_rng(seed).permutation(len(positions))
    _, first = np.unique(np.asarray(codes)[order], return_index=True)
    front = np.zeros(len(order), dtype=bool)
    front[np.sort(first)] = True
    return np.asarray(positions)[np.concatenate([order[front], order[~front]])]


def prior_proba(prefix_codes: np.ndarray, n_classes: int, n_rows: int) -> np.ndarray:
    """Laplace-smoothed class frequencies of a prefix, for every row of a block (n_rows, K).

    The code of a block whose prefix holds fewer than two classes, where no
    probe can be fit.
    """
    counts = np.bincount(prefix_codes, minlength=n_classes).astype(float) + 1.0
    return np.tile(counts / counts.sum(), (n_rows, 1))


def online_codelength(
    fit_proba: ProbaFit, codes: np.ndarray, n_classes: int, ends: Sequence[int]
) -> tuple[np.ndarray, float]:
    """Online codelength in bits of `codes`, in their given order, and the uniform code.

    The first ``ends[0]`` labels cost ``log2 K`` each; every next block
    ``codes[ends[i]:ends[i + 1]]`` costs ``-log2 p(label)`` under
    ``fit_proba(positions before it, its positions)``, mixed with
    :data:`MDL_FLOOR` of the uniform distribution. `fit_proba` may return
    probabilities for several probes at once (e.g. one per layer): (..., rows, K).

    Returns:
        The codelength (one per probe, or a 0-d array) and ``len(codes) * log2 K``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    uniform_bit = np.log2(n_classes)
    total: np.ndarray | float = ends[0] * uniform_bit
    positions = np.arange(len(codes))
    for start, end in zip(ends[:-1], ends[1:], strict=True):
        probabilities = np.asarray(fit_proba(positions[:start], positions[start:end]), dtype=float)
        mixed = (1.0 - MDL_FLOOR) * probabilities + MDL_FLOOR / n_classes
        true = np.take_along_axis(
            mixed,
            np.broadcast_to(codes[start:end, None], (*mixed.shape[:-1], 1)),
            axis=-1,
        )[..., 0]
        total = total - np.log2(true).sum(axis=-1)
    return np.asarray(total, dtype=float), float(len(codes) * uniform_bit)


def full_proba(probabilities: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over the classes a fit saw (last axis) spread into all `n_classes`."""
    out = np.zeros((*probabilities.shape[:-1], n_classes))
    out[..., np.asarray(present, dtype=np.int64)] = probabilities
    return out


def mdl_columns(bits: float, uniform: float, rows: int) -> dict[str, float | int]:
    """The results columns of one cell's codelength: its bits, the uniform code's, their ratio."""
    return {
        "mdl_bits": float(bits),
        "uniform_bits": float(uniform),
        "compression": float(uniform / bits) if bits > 0 else float("inf"),
        "mdl_rows": int(rows),
    }
