"""Masked pooling: mean and standard deviation over the valid frames of each utterance.

Frames that only exist because a batch was padded never enter a statistic. A
segment's statistics are kept as (frame count, mean, sum of squared deviations),
the form in which windows of one long utterance combine exactly (Chan et al.'s
parallel update). The standard deviation is the population one (``ddof=0``), so
an utterance of a single frame has std 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssl_ser.errors import UnknownChoiceError


@dataclass
class FrameStats:
    """Per-segment statistics of every hidden state.

    Attributes:
        count: valid frames per segment, shape (n,).
        mean: mean over valid frames, shape (n, states, dim).
        m2: sum over valid frames of squared deviations from the mean, same shape.
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    def __len__(self) -> int:
        return len(self.count)

    def take(self, indices: np.ndarray | slice) -> FrameStats:
        """The statistics of the segments at `indices` (or a slice), in that order."""
        return FrameStats(self.count[indices], self.mean[indices], self.m2[indices])

    @staticmethod
    def concat(parts: Sequence[FrameStats]) -> FrameStats:
        """Stack the segments of several :class:`FrameStats` along the first axis."""
        return FrameStats(
            np.concatenate([p.count for p in parts]),
            np.concatenate([p.mean for p in parts]),
            np.concatenate([p.m2 for p in parts]),
        )


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Boolean (batch, frames) mask, True on the first `lengths[b]` frames of row b."""
    positions = torch.arange(frames, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def masked_stats(
    hidden_states: Sequence[torch.Tensor], lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sum of squared deviations over valid frames, for every hidden state.

    Two passes in float32 (autocast off): the mean as a batched matrix product with
    the frame weights, then the squared deviations of the valid frames, in place.

    Args:
        hidden_states: one (batch, frames, dim) tensor per state, any float dtype.
        lengths: valid frames of each row, shape (batch,), all >= 1.

    Returns:
        ``(mean, m2)`` in float32, each of shape (batch, states, dim).
    """
    first = hidden_states[0]
    lengths = lengths.to(first.device)
    keep = frame_mask(lengths, first.shape[1]).float()
    weights = (keep / lengths[:, None].float()).unsqueeze(1)
    keep = keep.unsqueeze(-1)
    means, m2s = [], []
    with torch.autocast(first.device.type, enabled=False):
        for state in hidden_states:
            state = state.float()
            mean = torch.bmm(weights, state)
            deviation = (state - mean).mul_(keep).square_()
            means.append(mean[:, 0])
            m2s.append(deviation.sum(dim=1))
    return torch.stack(means, dim=1), torch.stack(m2s, dim=1)


def combine(parts: FrameStats) -> FrameStats:
    """Merge the segments of one utterance into one (exact parallel mean/variance update)."""
    count = parts.count.astype(np.float64)
    mean = parts.mean.astype(np.float64)
    m2 = parts.m2.astype(np.float64)
    total_count, total_mean, total_m2 = count[0], mean[0], m2[0]
    for n, segment_mean, segment_m2 in zip(count[1:], mean[1:], m2[1:], strict=True):
        merged = total_count + n
        delta = segment_mean - total_mean
        total_mean = total_mean + delta * (n / merged)
        total_m2 = total_m2 + segment_m2 + delta**2 * (total_count * n / merged)
        total_count = merged
    return FrameStats(np.array([total_count]), total_mean[None], total_m2[None])


def finalize(stats: FrameStats, poolings: Sequence[str]) -> dict[str, np.ndarray]:
    """The stored arrays: ``mean`` and/or ``std`` (population), float32 (n, states, dim)."""
    out: dict[str, np.ndarray] = {}
    for pooling in poolings:
        if pooling == "mean":
            out["mean"] = stats.mean.astype(np.float32)
        elif pooling == "std":
            count = stats.count.astype(np.float64).reshape(-1, *([1] * (stats.m2.ndim - 1)))
            variance = np.maximum(stats.m2.astype(np.float64) / count, 0.0)
            out["std"] = np.sqrt(variance).astype(np.float32)
        else:
            raise UnknownChoiceError("pooling", pooling, ("mean", "std"))
    return out
