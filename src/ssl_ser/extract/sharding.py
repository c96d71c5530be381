"""Which utterances each of N extraction shards takes: 1/N of the audio duration each.

The assignment depends on nothing but the manifest rows and N, so every shard
computes the same one without talking to the others: rows in canonical order (by
corpus, then utterance id, so the manifest file's order does not matter), then
longest first, each to the shard with the least audio so far (ties: the lowest
K), the longest-processing-time rule. Shards then differ by at most about one
utterance's duration, where an assignment by file count can differ by a large
share when lengths vary (CREMA-D's 1-5 s, MESD's 0.4-2 s...). Durations are the
manifest's ``duration`` column, so no audio is decoded to balance. A shard may
hold no row of a small corpus; it still writes its (empty) shard file, so the
merge can tell "empty" from "missing". Shards count from 1, as ``#SBATCH
--array=1-N`` numbers array tasks.
"""

from __future__ import annotations

import heapq
import re

import numpy as np
import pandas as pd

from ssl_ser.cache.shards import check_shard
from ssl_ser.errors import ConfigError

# Recorded with each shard, so shards made by another rule are never merged together.
BALANCE_RULE = "duration-lpt-v1"
SHOWN = 5
SHARD_TEXT = re.compile(r"^\s*(?P<shard>[+-]?\d+)\s*/\s*(?P<shards>[+-]?\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard K of N, K counting from 1.

    Raises:
        ConfigError: not two whole numbers K/N, or K outside 1..N (named).
    """
    match = SHARD_TEXT.match(str(text))
    if match is None:
        raise ConfigError(
            f"--shard {text!r}: expected K/N with whole numbers, e.g. 2/8 (shard 2 of 8)"
        )
    return check_shard(int(match["shard"]), int(match["shards"]))


def assign_shards(table: pd.DataFrame, shards: int) -> pd.Series:
    """The shard (1..`shards`) of each manifest row, aligned with `table`'s index.

    Deterministic: depends only on the rows' corpus, utt_id and duration and on
    `shards`, never on the row order (see the module docstring for the rule).
    """
    check_shard(1, shards)
    missing = [column for column in ("corpus", "utt_id", "duration") if column not in table]
    if missing:
        raise ConfigError(f"the manifest lacks column(s) {missing}, needed to assign shards")
    durations = table["duration"].astype(float).to_numpy()
    bad = ~np.isfinite(durations)
    if bad.any():
        shown = ", ".join(
            f"{utt_id} ({duration})"
            for utt_id, duration in zip(
                table["utt_id"].to_numpy()[bad][:SHOWN], durations[bad][:SHOWN], strict=True
            )
        )
        raise ConfigError(
            f"the manifest has {int(bad.sum())} duration(s) that are not finite, e.g. {shown}; "
            "prepare it again"
        )
    canonical = np.lexsort((table["utt_id"].astype(str), table["corpus"].astype(str)))
    # longest first, ties by canonical order (a stable sort of the canonical order)
    order = canonical[np.argsort(-durations[canonical], kind="stable")]
    heap = [(0.0, shard) for shard in range(1, shards + 1)]
    out = np.zeros(len(table), dtype=np.int64)
    for row in order:
        total, shard = heapq.heappop(heap)
        out[row] = shard
        heapq.heappush(heap, (total + float(durations[row]), shard))
    return pd.Series(out, index=table.index, name="shard")


def shard_seconds(table: pd.DataFrame, assignment: pd.Series, shards: int) -> list[float]:
    """Total manifest duration of each shard 1..`shards` (for reports and tests)."""
    totals = table["duration"].astype(float).groupby(assignment).sum()
    return [float(totals.get(shard, 0.0)) for shard in range(1, shards + 1)]
