"""Length handling: duration-bucketed batch plans, long-audio windows, padding.

Batches are planned on padded cost: a batch of utterances sorted by length costs
``count x longest`` seconds of model input, and that product stays within
``batch_seconds``; no utterance is padded by more than a fifth of its batch's
longest, because on a CPU padding is pure waste. Batches run longest first, so
a batch size that does not fit in memory fails at once, not at the end of a corpus.

This module uses numpy only; it knows no models and no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ssl_ser.extract.config import check_batch_seconds

# Shortest utterance a batch takes, as a fraction of its longest: padding wastes <= 20 %.
MIN_FILL = 0.8


def plan_batches(costs: Sequence[float], batch_seconds: float) -> list[list[int]]:
    """Group item indices into batches whose padded cost stays within `batch_seconds`.

    `costs` are seconds of model input per item; every index lands in exactly one
    batch, longest items first. A batch takes the next items while
    ``len(batch) * cost_of_its_first_item <= batch_seconds`` and the next item is at
    least :data:`MIN_FILL` of that first item; an item alone beyond the budget is a batch.
    """
    check_batch_seconds(batch_seconds)
    order = sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for index in order:
        too_many = (len(current) + 1) * longest > batch_seconds
        if current and (too_many or float(costs[index]) < MIN_FILL * longest):
            batches.append(current)
            current = []
        if not current:
            longest = float(costs[index])
        current.append(index)
    if current:
        batches.append(current)
    return batches


def segment_seconds(
    duration: float, sample_rate: int, max_seconds: float | None, long_audio: str
) -> list[float]:
    """Durations of the pieces :func:`split_long` will cut from `duration` seconds of audio."""
    samples = max(1, round(duration * sample_rate))
    limit = _limit_samples(sample_rate, max_seconds)
    if limit is None or samples <= limit:
        return [float(duration)]
    if long_audio == "crop":
        return [limit / sample_rate]
    pieces = math.ceil(samples / limit)
    return [samples / pieces / sample_rate] * pieces


def _limit_samples(sample_rate: int, max_seconds: float | None) -> int | None:
    """`max_seconds` in whole samples (at least one), or None for no limit."""
    return None if max_seconds is None else max(1, int(math.floor(max_seconds * sample_rate)))


def split_long(
    wave: np.ndarray, sample_rate: int, max_seconds: float | None, long_audio: str
) -> list[np.ndarray]:
    """Cut a waveform into the pieces the model sees, per the long-audio policy.

    ``crop`` keeps the first `max_seconds`; ``window`` splits the audio into the
    fewest equal windows of at most `max_seconds` (equal, so no window is a
    sliver too short for the model and batches pad little).
    """
    limit = _limit_samples(sample_rate, max_seconds)
    if limit is None or wave.shape[0] <= limit:
        return [wave]
    if long_audio == "crop":
        return [wave[:limit]]
    pieces = math.ceil(wave.shape[0] / limit)
    return [np.ascontiguousarray(part) for part in np.array_split(wave, pieces)]


def pad_stack(arrays: Sequence[np.ndarray], value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Stack arrays along a new first axis, padding their last axis to the longest.

    Returns:
        ``(batch, lengths)``: the padded float32 batch and each array's own length.
    """
    lengths = np.array([a.shape[-1] for a in arrays], dtype=np.int64)
    shape = (len(arrays), *arrays[0].shape[:-1], int(lengths.max()))
    batch = np.full(shape, value, dtype=np.float32)
    for row, array in enumerate(arrays):
        batch[row, ..., : array.shape[-1]] = array
    return batch, lengths
