"""Features joined with a manifest and a label set: the rows a sweep classifies.

Caches hold ids and features only; labels, speakers, gender, corpus and preset
splits come from the manifest, joined on ``utt_id``. Sources are grouped by
extractor (model and extractor config): one sweep per extractor, with one row
per (utterance, condition) so that a clean and a telephone cache of the same
corpus can be trained and tested across conditions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser.classify.features import FeatureSource
from ssl_ser.classify.splits import speaker_groups
from ssl_ser.errors import CacheError, CacheKeyMismatchError, ConfigError, ManifestError
from ssl_ser.labels import get_label_set

log = logging.getLogger(__name__)

MODEL_FIELDS: tuple[str, ...] = ("model", "model_id", "extractor")
CONDITION_FIELDS: tuple[str, ...] = ("condition",)
DIGEST_FIELDS: tuple[str, ...] = ("config_digest", "extractor_digest", "digest")
DEFAULT_CONDITION = "clean"


def key_value(key: Mapping[str, Any], names: Sequence[str], default: str = "") -> str:
    """The first of `names` present in a cache key, as a string."""
    for name in names:
        if name in key and key[name] is not None:
            return str(key[name])
    return default


def describe(source: FeatureSource) -> str:
    """How a source names itself in messages (its path for caches)."""
    return str(getattr(source, "path", None) or key_value(source.key, MODEL_FIELDS, "features"))


def check_keys(
    sources: Sequence[FeatureSource], model: str | None = None, condition: str | None = None
) -> None:
    """Refuse sources whose key disagrees with the requested model or condition.

    Raises:
        CacheKeyMismatchError: naming the source, the requested and the stored value.
    """
    for source in sources:
        for wanted, names, what in (
            (model, MODEL_FIELDS, "model"),
            (condition, CONDITION_FIELDS, "condition"),
        ):
            if wanted is None:
                continue
            stored = key_value(source.key, names, DEFAULT_CONDITION if what == "condition" else "")
            if stored != wanted:
                raise CacheKeyMismatchError(
                    f"{describe(source)} holds {what} {stored!r}, but {what} {wanted!r} was "
                    f"requested"
                )


def extractor_of(source: FeatureSource) -> tuple[str, str]:
    """(model name, extractor digest) identifying what computed a source's features."""
    return key_value(source.key, MODEL_FIELDS, "unknown"), key_value(source.key, DIGEST_FIELDS)


def group_by_extractor(
    sources: Sequence[FeatureSource],
) -> dict[tuple[str, str], list[FeatureSource]]:
    """Sources grouped by extractor, in first-seen order."""
    groups: dict[tuple[str, str], list[FeatureSource]] = {}
    for source in sources:
        groups.setdefault(extractor_of(source), []).append(source)
    return groups


@dataclass
class Dataset:
    """Rows to classify for one extractor: metadata table plus where each row's features live.

    ``table`` has one row per (utterance, condition) with the manifest columns
    ``utt_id corpus speaker gender split emotion``, plus ``condition``, ``label``
    (after the label set), ``group`` (speaker or fallback), ``source`` (index into
    ``sources``) and ``position`` (row within that source).
    """

    extractor: str
    sources: list[FeatureSource]
    table: pd.DataFrame
    classes: tuple[str, ...]
    label_set: str
    grouping: dict[str, str]
    dropped: dict[str, int]

    @property
    def layers(self) -> list[str]:
        """Layer names shared by every source."""
        return list(self.sources[0].layers)

    @property
    def conditions(self) -> list[str]:
        """Conditions present, sorted."""
        return sorted(self.table["condition"].unique())

    def keys(self) -> list[dict]:
        """The cache keys of the sources (recorded with every result)."""
        return [dict(s.key) for s in self.sources]

    def digest(self) -> str:
        """SHA-256 over keys, rows and labels: a results cell is reused only for equal data."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.keys(), sort_keys=True, default=str).encode())
        for row in self.table[["utt_id", "condition", "label", "group"]].itertuples(index=False):
            digest.update("\t".join(row).encode() + b"\n")
        return digest.hexdigest()


def build_datasets(
    sources: Sequence[FeatureSource],
    manifest: pd.DataFrame,
    label_set: str,
    *,
    model: str | None = None,
    condition: str | None = None,
) -> list[Dataset]:
    """Join every source with the manifest and a label set, one dataset per extractor.

    Raises:
        CacheKeyMismatchError: a source's key disagrees with `model` or `condition`.
        CacheError: sources of one extractor differ in layers or dim, or repeat ids.
        ManifestError: feature ids that the manifest does not list (no labels).
        ConfigError: the label set leaves fewer than two classes.
    """
    if not sources:
        raise ConfigError("no feature sources given")
    check_keys(sources, model, condition)
    label_set_obj = get_label_set(label_set)
    datasets = []
    for (model_name, _), group in group_by_extractor(sources).items():
        _check_compatible(group)
        table = _join(group, manifest)
        table, dropped = _apply_labels(table, label_set_obj)
        groups, grouping = speaker_groups(table)
        table["group"] = groups.to_numpy()
        classes = tuple(c for c in label_set_obj.classes if c in set(table["label"]))
        datasets.append(
            Dataset(model_name, list(group), table, classes, label_set, grouping, dropped)
        )
    return datasets


def _check_compatible(sources: Sequence[FeatureSource]) -> None:
    first = sources[0]
    for other in sources[1:]:
        if list(other.layers) != list(first.layers) or other.dim != first.dim:
            raise CacheError(
                f"{describe(other)} has layers {other.layers[:3]}... dim {other.dim}, but "
                f"{describe(first)} has layers {first.layers[:3]}... dim {first.dim}; "
                "sources of one extractor must match"
            )


def _join(sources: Sequence[FeatureSource], manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per (feature id, condition) with its manifest metadata."""
    indexed = manifest.set_index("utt_id")
    parts = []
    for s, source in enumerate(sources):
        ids = pd.Index(source.ids)
        missing = ids.difference(indexed.index)
        if len(missing):
            raise ManifestError(
                f"{len(missing)} of {len(ids)} feature ids of {describe(source)} are not in the "
                f"manifest (no labels), e.g. {', '.join(missing[:3])}; pass the manifest of "
                "the corpus the cache was extracted from with --manifest"
            )
        rows = indexed.loc[ids, ["corpus", "speaker", "gender", "split", "emotion"]].reset_index()
        rows["condition"] = key_value(source.key, CONDITION_FIELDS, DEFAULT_CONDITION)
        rows["source"] = s
        rows["position"] = np.arange(len(ids))
        parts.append(rows)
    table = pd.concat(parts, ignore_index=True)
    repeated = table.duplicated(["utt_id", "condition"])
    if repeated.any():
        first = table.loc[repeated].iloc[0]
        raise CacheError(
            f"utterance {first['utt_id']!r} ({first['condition']}) appears in more than one "
            "feature source; give each corpus/condition once"
        )
    return table


def _apply_labels(table: pd.DataFrame, label_set) -> tuple[pd.DataFrame, dict[str, int]]:
    """Add the label column; rows whose emotion the set excludes are dropped and counted."""
    labels = table["emotion"].map(label_set.label)
    excluded = labels.isna()
    dropped = {str(k): int(v) for k, v in table.loc[excluded, "emotion"].value_counts().items()}
    if dropped:
        log.warning(
            "label set %s leaves out %d row(s) of emotions it does not cover: %s",
            label_set.name,
            sum(dropped.values()),
            ", ".join(f"{emotion} {count}" for emotion, count in sorted(dropped.items())),
        )
    kept = table.loc[~excluded].copy()
    kept["label"] = labels[~excluded].astype(str)
    present = sorted(kept["label"].unique())
    if len(present) < 2:
        emotions = sorted(table["emotion"].unique())
        raise ConfigError(
            f"label set {label_set.name!r} (classes {list(label_set.classes)}) keeps "
            f"{len(present)} class(es) {present} of the emotions in the data {emotions}; "
            "choose a label set that covers at least two of them"
        )
    return kept.reset_index(drop=True), dropped
