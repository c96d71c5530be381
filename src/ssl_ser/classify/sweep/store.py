"""Storing cells: each scored cell saved as it finishes, and superseded cells moved aside.

The cell store itself (files, ids, tables) is :mod:`ssl_ser.classify.results`;
this module decides what a sweep puts there and what it moves out of the way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ssl_ser.classify.measures import EMOTION_TARGET, TARGET_COLUMN
from ssl_ser.classify.results import CellStore
from ssl_ser.results import GROUP_COLUMNS, SUPERSEDED_DIR

log = logging.getLogger(__name__)


def setting_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What a cell measures, whatever options computed it: its summary group and target.

    A cell without a target (stored before targets existed, or an emotion cell's
    description) predicts emotion.
    """
    target = str(row.get(TARGET_COLUMN) or EMOTION_TARGET)
    return (*(str(row.get(column)) for column in GROUP_COLUMNS), target)


def supersede_other_cells(
    store: CellStore, described: Mapping[str, Mapping[str, Any]], name: str
) -> None:
    """Move aside stored cells that would sit beside this run's in the tables.

    Classify sweeps and fine-tune runs both call it with the descriptions of
    their cells (`name` says whose, in the warnings). Two kinds, found in one
    pass over the stored cells:

    - stale features: cells of this run's cache keys computed from other features
      (the caches were rebuilt or re-extracted from other audio since, or the cell
      predates features digests); only runs that read caches describe them;
    - other runs: cells that measure what this run measures under other ids
      (another thread count, fold count, cache list, audio, model weights or
      options); kept, a fold would count twice and the spread would narrow.
    """
    # the features each cache list this sweep reads has now (cells key the caches they read)
    current = {
        d["cache_keys"]: d["features_digest"] for d in described.values() if "cache_keys" in d
    }
    mine = set(described)
    settings = {setting_key(description) for description in described.values()}
    moved: Counter[str] = Counter()

    def superseded(row: Mapping[str, Any]) -> bool:
        keys = row.get("cache_keys")
        if keys in current and row.get("features_digest") != current[keys]:
            moved["stale"] += 1
        elif row.get("cell_id") not in mine and setting_key(row) in settings:
            moved["other"] += 1
        else:
            return False
        return True

    store.supersede(superseded)
    where = f"moved them to {store.cells / SUPERSEDED_DIR}"
    if moved["stale"]:
        log.warning(
            "%s: %d cell(s) in %s were computed from other features of the same cache key(s) "
            "(a cache rebuilt or re-extracted since, or results of an older ssl-ser); %s and "
            "computing them again",
            name,
            moved["stale"],
            store.output,
            where,
        )
    if moved["other"]:
        log.warning(
            "%s: %d cell(s) in %s measured the same settings with other options or data "
            "(threads, folds, caches, audio, model weights); %s so that no fold counts twice",
            name,
            moved["other"],
            store.output,
            where,
        )
