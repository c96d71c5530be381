"""Features joined with a manifest and a label set: the rows a sweep classifies.

Caches hold ids and features only; labels, speakers, gender, corpus and preset
splits come from the manifest, joined on ``utt_id``. Sources are grouped by
extractor (model and extractor config): one sweep per extractor, with one row
per (utterance, condition) so that a clean and a telephone cache of the same
corpus can be trained and tested across conditions.

The manifest decides which utterances take part: a cache may hold more
utterances than the manifest lists (a manifest that is a subset of the cache's
rows), and only the manifest's rows are used, with a warning that counts the
cached rows left unused. The other way round, manifest utterances of a source's
corpus that have no features in it (failed extraction, or never extracted) are
left out with a warning that counts and names them, and are counted in
:attr:`Dataset.without_features`; they are never dropped silently.

Stale features are refused: a cache records the audio each row came from (see
:mod:`ssl_ser.fingerprint`), and the manifest's audio of every row used is
stat'ed (no hashing); a file at another path than the one recorded (rows whose
paths were exchanged), or whose size or modification time differs from the
record, means the features may be of other audio, and the dataset is refused
with the count, examples and the fix (``ser extract`` re-extracts changed files
and re-records touched ones). Files that are not found (a cache used on another
machine) cannot be checked and are counted in a warning, as are rows of an older
cache that has no fingerprints. Results cells are keyed by
:meth:`Dataset.digest`, which includes what the features are (the rows' audio
digests for caches), so a cache rebuilt from other audio never reuses a cell.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser import audio, fingerprint
from ssl_ser.classify.features import FeatureSource
from ssl_ser.classify.splits import speaker_groups
from ssl_ser.errors import (
    CacheError,
    CacheKeyMismatchError,
    ConfigError,
    ManifestError,
    SerError,
)
from ssl_ser.labels import LabelSet, get_label_set

log = logging.getLogger(__name__)

MODEL_FIELDS: tuple[str, ...] = ("model", "model_id", "extractor")
CONDITION_FIELDS: tuple[str, ...] = ("condition",)
DIGEST_FIELDS: tuple[str, ...] = ("config_digest", "extractor_digest", "digest")
DEFAULT_CONDITION = "clean"
SHOWN_STALE = 3


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


def group_by_extractor(
    sources: Sequence[FeatureSource],
) -> dict[tuple[str, str], list[FeatureSource]]:
    """Sources grouped by (model name, extractor digest), in first-seen order."""
    groups: dict[tuple[str, str], list[FeatureSource]] = {}
    for source in sources:
        model = key_value(source.key, MODEL_FIELDS, "unknown")
        groups.setdefault((model, key_value(source.key, DIGEST_FIELDS)), []).append(source)
    return groups


@dataclass
class Dataset:
    """Rows to classify for one extractor: metadata table plus where each row's features live.

    ``table`` has one row per (utterance, condition) with the manifest columns
    ``utt_id corpus speaker gender split emotion``, plus ``condition``, ``label``
    (after the label set), ``group`` (speaker or fallback), ``source`` (index into
    ``sources``) and ``position`` (row within that source). ``label_set`` is the
    label set's one spelling (:attr:`ssl_ser.labels.LabelSet.name`), ``dropped``
    counts rows left out per emotion the set excludes, ``unused`` counts cached
    rows per source that the manifest does not list, and ``without_features``
    counts manifest rows per source (of its corpora) that have no features there.
    """

    extractor: str
    sources: list[FeatureSource]
    table: pd.DataFrame
    classes: tuple[str, ...]
    label_set: str
    grouping: dict[str, str]
    dropped: dict[str, int]
    unused: dict[str, int] = field(default_factory=dict)
    without_features: dict[str, int] = field(default_factory=dict)
    _content: dict[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def layers(self) -> list[str]:
        """Layer names shared by every source."""
        return list(self.sources[0].layers)

    @property
    def conditions(self) -> list[str]:
        """Conditions present, sorted."""
        return sorted(self.table["condition"].unique())

    def sources_of(self, conditions: Collection[str]) -> list[int]:
        """Positions of the sources holding rows of `conditions` (what a cell of them reads)."""
        rows = self.table["condition"].isin(list(conditions)).to_numpy()
        return sorted({int(i) for i in self.table["source"].to_numpy()[rows]})

    def keys(self, sources: Sequence[int] | None = None) -> list[dict]:
        """The cache keys of the sources (all, or those at `sources`), recorded with results."""
        return [dict(self.sources[i].key) for i in self._chosen(sources)]

    def features_digest(self, sources: Sequence[int] | None = None) -> str:
        """SHA-256 over the keys and contents of the sources (all, or those at `sources`).

        Each source's content digest (``content_digest()``)
        is, for a cache, over the audio fingerprints of its rows, so a cache
        rebuilt from the same audio gives the same digest and one rebuilt from
        other audio under the same key gives another. Computed once per source.
        """
        chosen = self._chosen(sources)
        digest = hashlib.sha256()
        digest.update(json.dumps(self.keys(chosen), sort_keys=True, default=str).encode())
        for i in chosen:
            if i not in self._content:
                self._content[i] = self.sources[i].content_digest()
            digest.update(self._content[i].encode() + b"\n")
        return digest.hexdigest()

    def digest(self, sources: Sequence[int] | None = None) -> str:
        """SHA-256 over features, rows and labels of the sources (all, or those at `sources`).

        A results cell is reused only for equal data; with every source it covers
        every row, so a cell that reads every source keeps the id it always had.
        """
        chosen = self._chosen(sources)
        rows = self.table[self.table["source"].isin(chosen)]
        digest = hashlib.sha256()
        digest.update(json.dumps(self.keys(chosen), sort_keys=True, default=str).encode())
        for row in rows[["utt_id", "condition", "label", "group"]].itertuples(index=False):
            digest.update("\t".join(row).encode() + b"\n")
        digest.update(self.features_digest(chosen).encode())
        return digest.hexdigest()

    def _chosen(self, sources: Sequence[int] | None) -> list[int]:
        return list(range(len(self.sources))) if sources is None else list(sources)


def build_datasets(
    sources: Sequence[FeatureSource],
    manifest: pd.DataFrame,
    label_set: str | Sequence[str],
    *,
    model: str | None = None,
    condition: str | None = None,
    allow_incomplete: bool = False,
) -> list[Dataset]:
    """Join every source with the manifest and a label set, one dataset per extractor.

    Only utterances the manifest lists are used; `model` and `condition` refuse
    sources of another one. `allow_incomplete` classifies the complete rows of a
    cache that lacks some of the manifest's utterances (never extracted, or still
    being extracted), refused by default. Rows whose extraction failed (with a
    recorded reason) are left out either way, with a warning.

    Raises:
        CacheKeyMismatchError: a source's key disagrees with `model` or `condition`.
        CacheError: sources of one extractor differ in layers or dim, or repeat ids.
        ManifestError: a source none of whose feature ids the manifest lists.
        UnknownChoiceError, ConfigError: a bad label set, or one that leaves fewer
            than two classes.
    """
    if not sources:
        raise ConfigError("no feature sources given")
    check_keys(sources, model, condition)
    label_set_obj = get_label_set(label_set)
    datasets = []
    for (model_name, _), group in group_by_extractor(sources).items():
        _check_compatible(group)
        table, unused = _join(group, manifest)
        without = _report_without_features(group, table, manifest, allow_incomplete)
        table, dropped = apply_labels(table, label_set_obj)
        check_audio_unchanged(group, table, manifest)
        groups, grouping = speaker_groups(table)
        table["group"] = groups.to_numpy()
        classes = tuple(c for c in label_set_obj.classes if c in set(table["label"]))
        datasets.append(
            Dataset(
                model_name,
                list(group),
                table,
                classes,
                label_set_obj.name,
                grouping,
                dropped,
                unused,
                without,
            )
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


def _join(
    sources: Sequence[FeatureSource], manifest: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per (listed feature id, condition) with its manifest metadata.

    Cached ids the manifest does not list are left out (the manifest may be a
    subset of a cache); returns the table and, per source, how many were.
    """
    indexed = manifest.set_index("utt_id")
    parts = []
    unused: dict[str, int] = {}
    for s, source in enumerate(sources):
        ids = pd.Index(source.ids)
        listed = ids.isin(indexed.index)
        if len(ids) and not listed.any():
            raise ManifestError(
                f"none of the {len(ids)} feature ids of {describe(source)} is in the manifest "
                f"(no labels), e.g. {', '.join(ids[:3])}; pass the manifest of the corpus the "
                "cache was extracted from with --manifest"
            )
        n_unused = int((~listed).sum())
        if n_unused:
            unused[describe(source)] = n_unused
            log.warning(
                "%s: %d of %d cached utterance(s) are not in the manifest and are not used "
                "(e.g. %s); using the %d the manifest lists",
                describe(source),
                n_unused,
                len(ids),
                ", ".join(ids[~listed][:3]),
                int(listed.sum()),
            )
        columns = ["corpus", "speaker", "gender", "split", "emotion"]
        rows = indexed.loc[ids[listed], columns].reset_index()
        rows["condition"] = key_value(source.key, CONDITION_FIELDS, DEFAULT_CONDITION)
        rows["source"] = s
        rows["position"] = np.flatnonzero(listed)
        parts.append(rows)
    table = pd.concat(parts, ignore_index=True)
    repeated = table.duplicated(["utt_id", "condition"])
    if repeated.any():
        first = table.loc[repeated].iloc[0]
        raise CacheError(
            f"utterance {first['utt_id']!r} ({first['condition']}) appears in more than one "
            "feature source; give each corpus/condition once"
        )
    return table, unused


def check_audio_unchanged(
    sources: Sequence[FeatureSource], table: pd.DataFrame, manifest: pd.DataFrame
) -> None:
    """Refuse cache rows whose manifest audio changed since extraction (stat only, no hashing).

    Each used row's file (the ready telephone copy for caches extracted from
    them) is stat'ed and compared with the size and modification time ``ser
    extract`` recorded. Files not found, and rows without a recorded fingerprint,
    cannot be checked: a warning counts them. Sources without fingerprints
    (in-memory features) are not checked.

    Raises:
        CacheError: some files differ; names the count, examples and the fix.
    """
    if "path" not in manifest.columns:
        return
    by_id = {row["utt_id"]: row for row in manifest.to_dict("records")}
    for s, source in enumerate(sources):
        reader = getattr(source, "reader", None)
        if reader is None:
            continue
        records = getattr(reader, "fingerprints", None)
        used = table.loc[table["source"] == s, ["utt_id", "position"]]
        if records is None:
            log.warning(
                "%s was extracted before ssl-ser recorded audio fingerprints: cannot check that "
                "its %d row(s) are of the manifest's current audio; `ser extract` on the "
                "manifest records them",
                describe(source),
                len(used),
            )
            continue
        _check_source_audio(source, used, records, by_id)


def _check_source_audio(
    source: FeatureSource,
    used: pd.DataFrame,
    records: np.ndarray,
    by_id: Mapping[str, Mapping[str, Any]],
) -> None:
    """Stat each used row's audio against its record (see :func:`check_audio_unchanged`)."""
    condition = key_value(source.key, CONDITION_FIELDS, DEFAULT_CONDITION)
    telephone_source = _telephone_source(source.key)
    stale, unverified, unknown = [], 0, 0
    for utt_id, position in used.itertuples(index=False):
        record = records[position]
        if not bytes(record["blake2b"]):
            unknown += 1
            continue
        try:
            path = audio.utterance_path(by_id[utt_id], condition, telephone_source)
            info = os.stat(path)
        except (SerError, KeyError, OSError):  # no row, no such file: cannot be checked
            unverified += 1
            continue
        recorded = (int(record["size"]), int(record["mtime_ns"]))
        if _recorded_path(record) not in ("", fingerprint.path_digest(path)):
            stale.append(f"{utt_id} ({path}: not the file it was extracted from)")
        elif (int(info.st_size), int(info.st_mtime_ns)) != recorded:
            stale.append(f"{utt_id} ({path}: {recorded[0]} -> {info.st_size} bytes)")
    if stale:
        raise CacheError(
            f"{describe(source)}: the audio of {len(stale)} of {len(used)} utterance(s) changed "
            f"since their features were extracted (path, size or modification time differ), e.g. "
            f"{'; '.join(stale[:SHOWN_STALE])}. Its features may be of other audio: run "
            "`ser extract` on this manifest with the same options (it re-extracts changed "
            "audio and keeps files only touched), then classify again"
        )
    if unverified or unknown:
        log.warning(
            "%s: cannot check that %d of %d row(s) are of the manifest's current audio "
            "(%d audio file(s) not found, %d row(s) without a recorded fingerprint)",
            describe(source),
            unverified + unknown,
            len(used),
            unverified,
            unknown,
        )


def _recorded_path(record: np.void) -> str:
    """The path digest a fingerprint record holds ('' where none was recorded)."""
    if "path" not in (record.dtype.names or ()):
        return ""
    return bytes(record["path"]).rstrip(b"\0").decode("ascii", errors="replace")


def _telephone_source(key: Mapping[str, Any]) -> str:
    """The telephone source a cache key records (``derived`` when absent)."""
    with contextlib.suppress(TypeError, ValueError):
        params = json.loads(str(key.get("condition_params", "{}")))
        if isinstance(params, dict) and params.get("telephone_source"):
            return str(params["telephone_source"])
    return "derived"


def _report_without_features(
    sources: Sequence[FeatureSource],
    table: pd.DataFrame,
    manifest: pd.DataFrame,
    allow_incomplete: bool,
) -> dict[str, int]:
    """Warn about manifest rows of each source's corpora that have no features there.

    They cannot be classified and are left out; the warning says how many failed
    extraction (with a reason, when the source records failures) and how many
    were never extracted, naming a few. Returns the count per source.
    """
    counts: dict[str, int] = {}
    for s, source in enumerate(sources):
        corpora = set(table.loc[table["source"] == s, "corpus"])
        wanted = manifest.loc[manifest["corpus"].isin(corpora), "utt_id"]
        absent = wanted[~wanted.isin(set(source.ids))]
        if absent.empty:
            continue
        counts[describe(source)] = len(absent)
        failures = _failures(source)
        failed = [u for u in absent if u in failures]
        never = [u for u in absent if u not in failures]
        details = []
        if failed:
            shown = "; ".join(f"{u}: {failures[u]}" for u in failed[:3])
            details.append(f"{len(failed)} failed extraction ({shown})")
        if never and not allow_incomplete:
            raise CacheError(_incomplete_message(source, len(wanted), never))
        if never:
            details.append(f"{len(never)} never extracted ({', '.join(never[:3])})")
            details.append("`ser extract` on the manifest adds the missing ones")
        log.warning(
            "%s: %d utterance(s) of the manifest have no features and are left out: %s",
            describe(source),
            len(absent),
            "; ".join(details),
        )
    return counts


def _incomplete_message(source: FeatureSource, wanted: int, never: list[str]) -> str:
    """Why an incomplete cache is refused, with the counts and the two ways on."""
    complete = wanted - len(never)
    return (
        f"{describe(source)} is incomplete: {len(never)} of the manifest's {wanted} "
        f"utterance(s) of its corpus have no features yet (e.g. {', '.join(never[:3])}), "
        "never extracted or still being extracted; finish `ser extract` on the manifest, "
        f"or pass --allow-incomplete to classify the {complete} that have features"
    )


def _failures(source: FeatureSource) -> dict[str, str]:
    """utt_id -> reason of the rows a cache recorded as failed (none for other sources)."""
    reader = getattr(source, "reader", None)
    failures = getattr(reader, "failures", None)
    if failures is None or len(failures) == 0:
        return {}
    return dict(zip(failures["utt_id"], failures["reason"], strict=True))


def apply_labels(table: pd.DataFrame, label_set: LabelSet) -> tuple[pd.DataFrame, dict[str, int]]:
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
