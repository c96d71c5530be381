"""Shard files of a cache, and merging them into the normal cache file.

``ser extract --shard K/N`` writes 1/N of a corpus's utterances into a shard file
beside the normal cache file, ``DIR/<slug>/<corpus>/<condition>.shard-K-of-N.h5``
(K counts from 1). A shard file is an ordinary cache file (same key, writer, lock
and resume), so N shards run at once without touching each other's files, and a
killed shard resumes like any cache. Beside it, a JSON record (:class:`ShardRecord`,
written atomically once the shard holds its lock) says which utterances the shard
owns and where they sit in the corpus's manifest order.

:func:`merge` combines the N shards into the file a single-process ``ser extract``
writes (rows in manifest order, with their states, reasons, fingerprints,
features and the whole corpus's manifest digest), under the writer locks of the
target and of every shard. It refuses, naming files and utterances, whatever
would not give that file: mixed shard counts, keys or manifests, a missing or
unfinished shard, an utterance in two shards or a manifest row in none, an
existing target holding other rows. Slots follow the shards, one after the other;
no reader depends on slot order. A merge is idempotent and removes the shard
files unless ``keep``; shards left by a merge done before are recognised as such
(:func:`_leftovers`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

import ssl_ser
from ssl_ser.cache import layout
from ssl_ser.cache.layout import FAILED, FEATURES, FINGERPRINT, IDS, MISSING, REASON, SLOT
from ssl_ser.cache.lock import WriterLock
from ssl_ser.errors import CacheError, CacheKeyMismatchError, ConfigError

logger = logging.getLogger(__name__)

RECORD_FORMAT = "ssl-ser-cache-shard"
RECORD_VERSION = 2  # 2: order_digest, rows_digest
RECORD_SUFFIX = ".json"
# clean.shard-2-of-8.h5 -> condition clean, shard 2, shards 8
SHARD_NAME = re.compile(r"^(?P<stem>.+)\.shard-(?P<shard>\d+)-of-(?P<shards>\d+)\.h5$")
SHOWN = 5


def check_shard(shard: int, shards: int) -> tuple[int, int]:
    """Validate a shard number K of N (1 <= K <= N) and return it as ints.

    Raises:
        ConfigError: N < 1 or K outside 1..N, naming both and how shards count.
    """
    for what, value in (("shard", shard), ("shard count", shards)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"{what} {value!r} must be a whole number")
    if shards < 1:
        raise ConfigError(f"shard count {shards} must be at least 1 (in K/N, N is the count)")
    if not 1 <= shard <= shards:
        raise ConfigError(
            f"shard {shard}/{shards}: K must be between 1 and {shards}; shards count from 1 "
            "(like `#SBATCH --array=1-N`); with 0-based task ids use K+1"
        )
    return int(shard), int(shards)


def shard_path(cache_file: str | Path, shard: int, shards: int) -> Path:
    """The shard file of `cache_file`: ``DIR/.../clean.h5`` -> ``DIR/.../clean.shard-K-of-N.h5``."""
    shard, shards = check_shard(shard, shards)
    cache_file = Path(cache_file)
    return cache_file.with_name(f"{cache_file.stem}.shard-{shard}-of-{shards}{layout.SUFFIX}")


def record_path(shard_file: str | Path) -> Path:
    """The JSON record beside a shard file (``clean.shard-2-of-8.json``)."""
    return Path(shard_file).with_suffix(RECORD_SUFFIX)


def order_digest(ids: Sequence[str]) -> str:
    """SHA-256 of utterance ids in their order (the manifest digest is order-free)."""
    digest = hashlib.sha256()
    for utt_id in ids:
        digest.update(f"{utt_id}\n".encode())
    return digest.hexdigest()


def parse_shard_name(path: str | Path) -> tuple[Path, int, int] | None:
    """(target cache file, K, N) of a shard file's name, or None for other names."""
    path = Path(path)
    match = SHARD_NAME.match(path.name)
    if match is None:
        return None
    target = path.with_name(match["stem"] + layout.SUFFIX)
    return target, int(match["shard"]), int(match["shards"])


@dataclass
class ShardRecord:
    """Which utterances one shard owns, and where they sit in the corpus's manifest order.

    Attributes:
        shard: K (1-based).
        shards: N.
        ids: the shard's utterance ids, in manifest order.
        positions: each id's row number in the corpus's manifest rows (0-based).
        corpus_rows: how many rows the corpus has in the manifest (all shards).
        manifest_digest: digest of the corpus's manifest rows (all shards), stored
            in the merged file as a single-process run stores it.
        seconds: total audio duration of the shard's rows (from the manifest).
        balance: the assignment rule that made the shards (shards made by
            different rules are refused).
        order_digest: digest of the corpus's utterance ids in manifest order
            (:func:`order_digest`); `positions` count in that order, so shards
            whose manifests list the same rows in another order are refused.
        rows_digest: manifest digest of the shard's own rows, as its file's header
            stores it (a record that does not describe its file is refused).
    """

    shard: int
    shards: int
    ids: list[str]
    positions: list[int]
    corpus_rows: int
    manifest_digest: str
    seconds: float = 0.0
    balance: str = ""
    order_digest: str = ""
    rows_digest: str = ""

    def write(self, path: str | Path) -> None:
        """Write the record as JSON, atomically (a temporary file renamed over `path`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": RECORD_FORMAT, "version": RECORD_VERSION, **self.__dict__}
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(payload), encoding="utf-8")
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise layout.storage_error(path, error, "write the shard record") from error

    @classmethod
    def read(cls, path: str | Path) -> ShardRecord:
        """Read a record written by :meth:`write`.

        Raises:
            CacheError: no file, not JSON, or not a shard record of this version.
        """
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise CacheError(
                f"shard record {path} is missing; run the shard again to rewrite it"
            ) from error
        except (OSError, ValueError) as error:
            raise CacheError(f"shard record {path} cannot be read: {error}") from error
        if not isinstance(payload, dict) or payload.get("format") != RECORD_FORMAT:
            raise CacheError(f"{path} is not an ssl-ser shard record")
        if payload.get("version") != RECORD_VERSION:
            raise CacheError(
                f"shard record {path} has version {payload.get('version')!r}; this toolkit "
                f"reads version {RECORD_VERSION}: run the shard again"
            )
        fields = {name: payload[name] for name in cls.__dataclass_fields__ if name in payload}
        try:
            record = cls(**fields)
        except TypeError as error:
            raise CacheError(f"shard record {path} is incomplete: {error}") from error
        if len(record.ids) != len(record.positions):
            raise CacheError(
                f"shard record {path} has {len(record.ids)} ids for "
                f"{len(record.positions)} positions"
            )
        return record


class MissingShardsError(CacheError):
    """Some shard of a cache file is missing (no file); `files`: the path of each K found.

    A K found may have only its record, no file.
    """

    def __init__(self, message: str, shards: int, files: dict[int, Path]):
        super().__init__(message)
        self.shards = shards
        self.files = files


@dataclass
class MergeSummary:
    """What :func:`merge` did for one cache file (merged from `shards` shard files)."""

    path: Path
    shards: int
    rows: int = 0
    complete: int = 0
    failed: int = 0
    already_merged: bool = False
    removed: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    gone: list[int] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary ``ser cache merge`` prints."""
        what = "already merged from" if self.already_merged else "merged"
        gone = ""
        if self.gone:
            gone = f" ({', '.join(f'{k}/{self.shards}' for k in self.gone)} already removed)"
        text = (
            f"{self.path}: {what} {self.shards} shard(s){gone}, {self.rows} rows "
            f"({self.complete} complete, {self.failed} failed), {self.seconds:.1f} s"
        )
        if self.leftovers:
            verb = "removed" if self.removed else "left"
            text += f"; {verb} {len(self.leftovers)} leftover shard file(s)"
        elif self.removed:
            text += f"; removed its {len(self.removed)} shard file(s)"
        return text


@dataclass
class _Shard:
    """One shard file of a merge, opened: its record, header and row states."""

    number: int
    path: Path
    record: ShardRecord
    header: layout.Header
    file: h5py.File
    rows: np.ndarray  # row in the shard file of each record id
    states: np.ndarray  # slot / MISSING / FAILED of each record id

    @property
    def name(self) -> str:
        return f"shard {self.number}/{self.record.shards} ({self.path})"


def sharded_caches(directory: str | Path) -> list[Path]:
    """The cache files under `directory` that shard files (or only records) lie beside, sorted."""
    root = Path(directory)
    if not root.is_dir():
        raise CacheError(f"cache folder {root} does not exist")
    candidates = {
        *root.rglob(f"*.shard-*{layout.SUFFIX}"),
        *root.rglob(f"*.shard-*{RECORD_SUFFIX}"),
    }
    parsed = (parse_shard_name(path.with_suffix(layout.SUFFIX)) for path in candidates)
    return sorted({found[0] for found in parsed if found is not None})


def merge_all(
    directory: str | Path, keep: bool = False, progress: bool = False
) -> tuple[list[MergeSummary], list[CacheError]]:
    """Merge every sharded cache under `directory`; the summaries and the refusals.

    A cache whose shards cannot be merged does not stop the others.
    """
    summaries, errors = [], []
    for target in sharded_caches(directory):
        try:
            summaries.append(merge(target, keep=keep, progress=progress))
        except CacheError as error:
            errors.append(error)
    return summaries, errors


def merge(target: str | Path, keep: bool = False, progress: bool = False) -> MergeSummary:
    """Combine the shard files of cache file `target` into it (see the module docstring).

    Raises:
        CacheError: the shards cannot be merged (the message names files and ids);
            CacheKeyMismatchError for mixed keys; CacheLockedError when a shard
            or the target is being written.
    """
    started = time.perf_counter()
    target = Path(target)
    try:
        paths = _shard_files(target)
    except MissingShardsError as missing:
        if not target.exists():
            raise
        summary = _leftovers(target, missing, keep)
        summary.seconds = time.perf_counter() - started
        return summary
    with _locked(target, paths) as shards:
        shards.extend(_open_shard(path) for path in paths)
        ids, sources = _plan_merge(target, shards)
        summary = _summary(target, len(shards), np.concatenate([s.states for s in shards]))
        header = _merged_header(shards)
        if target.exists() and _holds(target, header, ids, shards):
            summary.already_merged = True
            logger.info("%s already holds the rows of its %d shard(s)", target, len(shards))
        else:
            _refuse_other_target(target, header, ids)
            _write_merged(target, header, ids, shards, sources, progress)
        _close(shards)
        if not keep:
            summary.removed = _remove(paths)
    summary.seconds = time.perf_counter() - started
    return summary


def shard_counts(target: str | Path) -> dict[int, dict[int, Path]]:
    """The shard files of `target` lying beside it (or only their records), by N then K."""
    target = Path(target)
    found: dict[int, dict[int, Path]] = {}
    folder = target.parent
    if folder.is_dir():
        for path in folder.iterdir():
            if path.suffix not in (layout.SUFFIX, RECORD_SUFFIX):
                continue  # clean.shard-1-of-3.h5~, .bak copies: not shards
            parsed = parse_shard_name(path.with_suffix(layout.SUFFIX))
            if parsed is not None and parsed[0] == target:
                found.setdefault(parsed[2], {})[parsed[1]] = path.with_suffix(layout.SUFFIX)
    return dict(sorted(found.items()))


def refuse_mixed_counts(target: str | Path, found: dict[int, dict[int, Path]]) -> None:
    """Refuse shard files of several shard counts beside `target`, naming them."""
    if len(found) > 1:
        counts = ", ".join(
            f"{len(files)} of {n} ({', '.join(sorted(p.name for p in files.values()))})"
            for n, files in sorted(found.items())
        )
        raise CacheError(
            f"{target}: shard files of different shard counts lie beside it: {counts}. "
            "Remove the shards of the run you abandoned, then merge again."
        )


def _shard_files(target: Path) -> list[Path]:
    """The shard files of `target`, sorted by K; refuses mixed counts and missing shards."""
    found = shard_counts(target)
    if not found:
        raise CacheError(f"no shard files of {target} (expected {target.stem}.shard-K-of-N.h5)")
    refuse_mixed_counts(target, found)
    ((shards, files),) = found.items()
    strays = sorted(k for k in files if not 1 <= k <= shards)
    missing = [k for k in range(1, shards + 1) if k not in files]
    if strays:
        raise CacheError(f"{target}: shard file(s) numbered outside 1..{shards}: {strays}")
    if missing:
        names = ", ".join(shard_path(target, k, shards).name for k in missing[:SHOWN])
        raise MissingShardsError(
            f"{target}: {len(missing)} of {shards} shard(s) missing: "
            f"{', '.join(f'{k}/{shards}' for k in missing)} (no {names}); run "
            f"`ser extract ... --shard K/{shards}` for each, then merge again",
            shards,
            files,
        )
    for k, path in sorted(files.items()):
        if not path.is_file():
            raise MissingShardsError(
                f"{target}: shard {k}/{shards} has a record but no file {path.name}; "
                f"run `ser extract ... --shard {k}/{shards}` again",
                shards,
                files,
            )
    return [files[k] for k in sorted(files)]


def _open_shard(path: Path) -> _Shard:
    """Open one shard file read-only with its record; refuses one that has not finished."""
    parsed = parse_shard_name(path)
    assert parsed is not None  # _shard_files only returns shard names
    _, number, shards = parsed
    record = ShardRecord.read(record_path(path))
    if (record.shard, record.shards) != (number, shards):
        raise CacheError(
            f"{path}: its record says shard {record.shard}/{record.shards}, its name "
            f"{number}/{shards}; was it copied or renamed? Run the shard again"
        )
    file = layout.open_h5(path, "r")
    try:
        with layout.damage_as_error(path):
            header = layout.Header.read(file, path)
        index = layout.read_index(file, path)  # a damaged index is refused, naming the file
        stored, slots = index.ids, index.slots
        row_of = {utt_id: row for row, utt_id in enumerate(stored)}
        rows = np.array([row_of.get(u, -1) for u in record.ids], dtype=np.int64)
        states = np.where(rows >= 0, slots[np.maximum(rows, 0)] if len(slots) else MISSING, MISSING)
        shard = _Shard(number, path, record, header, file, rows, states.astype(np.int64))
        pending = [u for u, state in zip(record.ids, shard.states, strict=True) if state == MISSING]
        if pending:
            raise CacheError(
                f"{shard.name} has not finished: {len(pending)} of {len(record.ids)} "
                f"utterance(s) not extracted yet (e.g. {', '.join(pending[:SHOWN])}); run or "
                f"resume it with `ser extract ... --shard {number}/{shards}`"
            )
        if record.rows_digest != header.manifest_digest:
            raise CacheError(
                f"shard {number}/{shards} ({path}): its record does not describe its file "
                f"(rows digest {record.rows_digest[:12] or 'none'} in the record, "
                f"{header.manifest_digest[:12] or 'none'} in the file); run "
                f"`ser extract ... --shard {number}/{shards}` again"
            )
        extra = len(set(stored) - set(record.ids))
        if extra:
            logger.warning(
                "%s holds %d row(s) its manifest no longer assigns to it; they are left out",
                shard.name,
                extra,
            )
    except BaseException:
        file.close()
        raise
    return shard


def _plan_merge(target: Path, shards: Sequence[_Shard]) -> tuple[list[str], list[tuple[int, int]]]:
    """The merged ids in manifest order, and for each its (shard index, index in shard record)."""
    first = shards[0]
    for shard in shards[1:]:
        differences = first.header.differences(shard.header)
        if differences:
            raise CacheKeyMismatchError(
                f"{target}: {shard.name} was built with another key than {first.name}; "
                "differing fields (first, then this shard):\n  "
                + "\n  ".join(differences)
                + "\nRun that shard again with the same options (or remove it), then merge."
            )
    origins = {(s.record.corpus_rows, s.record.manifest_digest, s.record.balance) for s in shards}
    if len(origins) > 1:
        described = "; ".join(
            f"{s.name}: {s.record.corpus_rows} rows, manifest digest "
            f"{s.record.manifest_digest[:12]}, assignment {s.record.balance or '?'}"
            for s in shards
        )
        raise CacheError(
            f"{target}: the shards were made from different manifests (or by different "
            f"assignment rules): {described}. Run the stale shards again with the same manifest."
        )
    orders = {s.record.order_digest for s in shards}
    if len(orders) > 1:
        described = "; ".join(f"{s.name}: order {s.record.order_digest[:12]}" for s in shards)
        raise CacheError(
            f"{target}: the shards were made from manifests with the same rows in a different "
            f"row order ({described}); each shard places its rows by its manifest's order. "
            "Run the stale shards again from the same manifest file, then merge."
        )
    total = first.record.corpus_rows
    owner: dict[str, int] = {}
    slots: list[tuple[int, int] | None] = [None] * total
    ids: list[str | None] = [None] * total
    for index, shard in enumerate(shards):
        for place, (utt_id, position) in enumerate(
            zip(shard.record.ids, shard.record.positions, strict=True)
        ):
            if utt_id in owner:
                other = shards[owner[utt_id]]
                raise CacheError(
                    f"{target}: utterance {utt_id!r} is in two shards, {other.name} and "
                    f"{shard.name}; shards made by different runs are mixed. Run them again "
                    "with the same manifest and shard count, then merge."
                )
            if not 0 <= position < total:
                raise CacheError(
                    f"{target}: {shard.name} puts {utt_id!r} at manifest row {position}, "
                    f"outside 0..{total - 1}; run the shards again"
                )
            taken = slots[position]
            if taken is not None:
                raise CacheError(
                    f"{target}: {shard.name} puts {utt_id!r} at manifest row {position}, "
                    f"where {shards[taken[0]].name} puts {ids[position]!r}; run the shards "
                    "again with the same manifest"
                )
            owner[utt_id] = index
            slots[position] = (index, place)
            ids[position] = utt_id
    empty = [position for position, origin in enumerate(slots) if origin is None]
    if empty:
        raise CacheError(
            f"{target}: {len(empty)} manifest row(s) (e.g. {empty[:SHOWN]}) are in no shard; "
            "run the shards again with the same manifest"
        )
    return [str(u) for u in ids], [origin for origin in slots if origin is not None]


def _merged_header(shards: Sequence[_Shard]) -> layout.Header:
    """The header of the merged file: the shards' key and layout, the whole corpus's digest."""
    digest = shards[0].record.manifest_digest
    return replace(shards[0].header, manifest_digest=digest, toolkit_version=ssl_ser.__version__)


@contextlib.contextmanager
def _locked(target: Path, paths: Sequence[Path]) -> Iterator[list[_Shard]]:
    """Hold the writer locks of `target` and of the shard files `paths` while inside.

    Yields the list to put the shards opened under the locks in; they are closed
    on the way out.
    """
    opened: list[_Shard] = []
    with contextlib.ExitStack() as stack:
        for path in (target, *paths):
            stack.enter_context(WriterLock(path))
        try:
            yield opened
        finally:
            _close(opened)


def _close(opened: Sequence[_Shard]) -> None:
    """Close the shard files that are still open."""
    for shard in opened:
        if shard.file.id.valid:
            shard.file.close()


def _leftovers(target: Path, missing: MissingShardsError, keep: bool) -> MergeSummary:
    """The shards that are left of a merge done before (some already removed), or a refusal.

    A merge killed while removing its shard files (or a shard deleted by hand after
    ``--keep-shards``) leaves a complete target and some shards. When the target
    holds every remaining shard's rows (same key and layout, manifest digest, ids at
    the recorded positions, row states, reasons and fingerprints), they are
    leftovers: removed (unless `keep`), and the target is reported as merged.
    """
    files = [p for p in missing.files.values() if p.is_file()]
    records = [record_path(p) for p in missing.files.values() if not p.is_file()]
    records = [p for p in records if p.is_file()]
    with _locked(target, files) as opened:
        try:
            opened.extend(_open_shard(path) for path in files)
            orphans = [ShardRecord.read(path) for path in records]
            summary = _check_leftovers(target, missing.shards, opened, orphans)
        except CacheError as error:
            raise MissingShardsError(
                f"{missing}. {target} exists but is not their merge: {error}",
                missing.shards,
                missing.files,
            ) from error
        _close(opened)
        summary.leftovers = [*files, *records]
        if not keep:
            summary.removed = _remove(files)
            for path in records:
                path.unlink(missing_ok=True)
    logger.info("%s already merged; %d leftover shard file(s)", target, len(summary.leftovers))
    return summary


def _check_leftovers(
    target: Path, count: int, opened: Sequence[_Shard], orphans: Sequence[ShardRecord]
) -> MergeSummary:
    """A summary of `target` if it holds the rows of every remaining shard; else CacheError."""
    stored = CacheRows.read(target)
    header, ids = stored.header, stored.ids
    for record, name in [
        *((s.record, s.name) for s in opened),
        *((r, f"shard {r.shard}/{r.shards} (record only)") for r in orphans),
    ]:
        if record.shards != count:
            raise CacheError(f"{name} is a shard of {record.shards}, not {count}")
        if record.corpus_rows != len(ids) or record.manifest_digest != header.manifest_digest:
            raise CacheError(
                f"{name} comes from another manifest ({record.corpus_rows} rows, digest "
                f"{record.manifest_digest[:12]}; the cache: {len(ids)} rows, digest "
                f"{header.manifest_digest[:12]})"
            )
        held = [ids[p] if 0 <= p < len(ids) else None for p in record.positions]
        wrong = [u for u, h in zip(record.ids, held, strict=True) if u != h]
        if wrong:
            raise CacheError(
                f"{name}: {len(wrong)} of its utterances are not at their manifest rows in "
                f"the cache (e.g. {', '.join(wrong[:SHOWN])})"
            )
    for shard in opened:
        differences = header.differences(shard.header)
        if differences:
            raise CacheKeyMismatchError(
                f"{shard.name} was built with another key: " + "; ".join(differences)
            )
        if not stored.holds(shard):
            raise CacheError(f"the cache's row states or fingerprints differ from {shard.name}")
    summary = _summary(target, count, stored.states, already_merged=True)
    present = {s.number for s in opened}
    summary.gone = [k for k in range(1, count + 1) if k not in present]
    return summary


def _holds(target: Path, header: layout.Header, ids: list[str], shards: Sequence[_Shard]) -> bool:
    """Whether the existing `target` holds exactly the shards' rows (a merge done before)."""
    stored = CacheRows.read(target)
    if stored.header.differences(header) or stored.header.manifest_digest != header.manifest_digest:
        return False
    return stored.ids == ids and all(stored.holds(shard) for shard in shards)


@dataclass
class CacheRows:
    """The header and row index of an existing cache file, to compare with shards or a manifest."""

    header: layout.Header
    ids: list[str]
    states: np.ndarray
    prints: np.ndarray | None
    reasons: np.ndarray

    @classmethod
    def read(cls, path: str | Path) -> CacheRows:
        """Read them from the cache file at `path`."""
        path = Path(path)
        with layout.open_h5(path, "r") as file:
            header = layout.Header.read(file, path)
            ids = list(file[IDS].asstr()[:])
            states = file[SLOT][: len(ids)].astype(np.int64)
            return cls(header, ids, states, _prints(file, len(ids)), file[REASON][: len(ids)])

    def differences(self, ids: Sequence[str], manifest_digest: str) -> str:
        """How these rows differ from `ids` (in order) and their manifest digest; "" if not.

        Compares the ids, their order and the manifest digest (emotions, durations), not
        the features; used to refuse, before any extraction, a target no merge could match.
        """
        stored = self.ids
        if stored != list(ids):
            wanted, held = set(ids), set(stored)
            missing = [u for u in ids if u not in held]
            extra = [u for u in stored if u not in wanted]
            if not missing and not extra:
                return f"it holds the same {len(stored)} utterances in another order"
            parts = [f"it holds {len(stored)} rows, the manifest {len(ids)}"]
            if missing:
                parts.append(f"{len(missing)} not in it (e.g. {', '.join(missing[:SHOWN])})")
            if extra:
                parts.append(f"{len(extra)} not in the manifest (e.g. {', '.join(extra[:SHOWN])})")
            return "; ".join(parts)
        digest = self.header.manifest_digest
        if digest != manifest_digest:
            return (
                f"same utterances, but another manifest digest ({digest[:12] or 'none'} against "
                f"{manifest_digest[:12]}): emotions or durations changed"
            )
        return ""

    @cached_property
    def row_of(self) -> dict[str, int]:
        """The row of each utterance id."""
        return {utt_id: row for row, utt_id in enumerate(self.ids)}

    def holds(self, shard: _Shard) -> bool:
        """Whether the row states, fingerprints and reasons are those of `shard`'s rows."""
        rows = np.array([self.row_of[u] for u in shard.record.ids], dtype=np.int64)
        mine = self.states[rows]
        if not np.array_equal(mine >= 0, shard.states >= 0):
            return False
        if not np.array_equal(mine == FAILED, shard.states == FAILED):
            return False
        stored = _prints(shard.file, len(shard.file[IDS]))
        if len(rows) and stored is not None:
            theirs = stored[shard.rows]
            if self.prints is None or not np.array_equal(self.prints[rows], theirs):
                return False
        failed = shard.states == FAILED
        if failed.any():
            theirs = shard.file[REASON][: len(shard.file[IDS])][shard.rows[failed]]
            if not np.array_equal(self.reasons[rows[failed]], theirs):
                return False
        return True


def _summary(target: Path, shards: int, states: np.ndarray, **fields: Any) -> MergeSummary:
    """The summary of a merged `target` whose rows have `states` (counted complete, failed)."""
    complete, failed = int((states >= 0).sum()), int((states == FAILED).sum())
    return MergeSummary(target, shards, len(states), complete, failed, **fields)


def _refuse_other_target(target: Path, header: layout.Header, ids: Sequence[str]) -> None:
    """Refuse to overwrite an existing target that is not this merge's result."""
    if not target.exists():
        return
    try:
        stored = layout.read_header(target)
        detail = "; ".join(stored.differences(header)) or (
            CacheRows.read(target).differences(ids, header.manifest_digest)
            or "the same ids, but other row states, reasons or fingerprints than the shards'"
        )
    except CacheError as error:
        detail = str(error)
    raise CacheError(
        f"{target} already exists and is not the merge of its shards ({detail}); it may come "
        "from a run without --shard. Move it away (or delete it) and merge again, or delete "
        "the shard files to keep it."
    )


def _write_merged(
    target: Path,
    header: layout.Header,
    ids: list[str],
    shards: Sequence[_Shard],
    sources: Sequence[tuple[int, int]],
    progress: bool,
) -> None:
    """Build the merged file beside `target` (``.partial``), then rename it over `target`."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    layout.build(partial, header, ids, cache=target)
    try:
        with h5py.File(partial, "r+", libver=layout.LIBVER, locking=False) as file:
            _copy_shards(file, shards, sources, progress, target)
            file.flush()
        layout.fsync_path(partial)
        os.replace(partial, target)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError | RuntimeError):
            action = f"build (as {partial.name}) the merged"
            raise layout.storage_error(target, error, action) from error
        raise
    layout.fsync_dir(target.parent)
    logger.info("merged %d shard(s) into %s (%d rows)", len(shards), target, len(ids))


def _copy_shards(
    file: h5py.File,
    shards: Sequence[_Shard],
    sources: Sequence[tuple[int, int]],
    progress: bool,
    target: Path,
) -> None:
    """Copy every shard's row states, reasons, fingerprints and features into the new file.

    Target row r takes record place `sources[r]`; complete rows get slots shard after
    shard, in each shard's own slot order, so each block of a shard lands in one run.
    """
    rows_of = [np.full(len(s.record.ids), -1, dtype=np.int64) for s in shards]
    for row, (index, place) in enumerate(sources):
        rows_of[index][place] = row
    states = np.full(len(sources), MISSING, dtype=np.int64)
    prints = np.zeros(len(sources), dtype=layout.FINGERPRINT_DTYPE)
    blocks = sum(_block_count(s) for s in shards) * len(file[FEATURES])
    bar = tqdm(
        total=blocks,
        desc=f"merge {target.parent.name}/{target.stem}",
        unit="block",
        disable=not progress,
    )
    offset = 0
    with bar:
        for shard, rows in zip(shards, rows_of, strict=True):
            stored = len(shard.file[IDS])
            failed = shard.states == FAILED
            states[rows[failed]] = FAILED
            if failed.any():
                reasons = shard.file[REASON][:stored][shard.rows[failed]]
                for row, reason in zip(rows[failed], reasons, strict=True):
                    file[REASON][row] = reason
            if FINGERPRINT in shard.file and len(rows):
                theirs = layout.as_fingerprint_records(shard.file[FINGERPRINT][:stored])
                prints[rows] = theirs[shard.rows]
            complete = shard.states >= 0
            old = shard.states[complete]
            order = np.argsort(old, kind="stable")
            slots = offset + np.arange(len(old))
            states[rows[complete][order]] = slots
            for pooling in shard.header.poolings:
                source, copy = shard.file[FEATURES][pooling], file[FEATURES][pooling]
                layout.copy_features(source, copy, old[order], slots, str(shard.path), bar)
            offset += len(old)
    file[SLOT][: len(sources)] = states.astype(np.int32)
    file[FINGERPRINT][: len(sources)] = prints


def _block_count(shard: _Shard) -> int:
    used = shard.states[shard.states >= 0]
    if not len(used):
        return 0
    chunk_rows = shard.file[FEATURES][shard.header.poolings[0]].chunks[1]
    return len(np.unique(used // chunk_rows))


def _prints(file: h5py.File, n_rows: int) -> np.ndarray | None:
    """The first `n_rows` fingerprint records of an open cache as FINGERPRINT_DTYPE, or None."""
    if FINGERPRINT not in file:
        return None
    return layout.as_fingerprint_records(file[FINGERPRINT][:n_rows])


def _remove(paths: Sequence[Path]) -> list[Path]:
    """Remove merged shard files and their records; the shard files removed."""
    removed = []
    for path in paths:
        for item in (path, record_path(path)):
            try:
                item.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                logger.warning("could not remove %s after the merge: %s", item, error)
                continue
            if item == path:
                removed.append(item)
    return removed
