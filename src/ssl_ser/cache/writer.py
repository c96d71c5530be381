"""The cache writer: registers utterances, buffers pooled rows and commits them crash-safely.

A commit (``flush``) writes the buffered rows into free slots in blocks, flushes
and fsyncs the file, and only then marks the rows complete in ``/slot`` and
syncs again. A process killed at any point leaves rows either complete with all
their data on disk, or not complete; the next run redoes the latter.

A write or sync that fails (a full disk, an I/O error) stops the writer with a
one-line CacheError naming the file, before the completion mask is touched: the
rows of that commit stay not complete and the next run redoes them. The disk space
itself is taken when a file is built (see :mod:`.layout`), so on ordinary file
systems a full disk stops a rebuild, never a commit.

A complete cache in a folder the process cannot write (no lock file can be made)
opens read-only: asking for nothing new works, anything that would write is a
CacheError saying so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ssl_ser.cache import inspection, layout
from ssl_ser.cache.layout import FAILED, FEATURES, MISSING, REASON, SLOT, Header, HeaderFields
from ssl_ser.cache.lock import WriterLock
from ssl_ser.errors import CacheError, CacheKeyMismatchError, ConfigError
from ssl_ser.fingerprint import Fingerprint

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_ROWS = 256
# What a lock file that cannot be created says: the folder is not ours to write.
_READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
# HDF5 chunk-cache hash slots (a prime well above the number of cached chunks).
_CACHE_SLOTS = 10007
_NO_FINGERPRINT = np.zeros((), dtype=layout.FINGERPRINT_DTYPE)


class CacheWriter(HeaderFields):
    """Writes pooled features of one (extractor, corpus, condition) into its cache file.

    Use as a context manager; see the package docstring for the calling sequence.
    Only one writer per file at a time (others get CacheLockedError).

    Args:
        path: the ``.h5`` file (see :func:`ssl_ser.cache.cache_path`); created if absent.
        key: flat dict describing what the features are; an existing file with a
            different key is refused with CacheKeyMismatchError naming the fields.
        layers: layer names, in storage order.
        dim: feature dimension of every layer.
        poolings: pooled statistics stored side by side (each is written and read alone).
        storage_dtype: ``float16`` (default, half the disk) or ``float32``. An
            existing file in the other dtype is refused unless `convert_dtype`.
        flush_rows: buffered rows that trigger a commit; call :meth:`flush` to
            commit earlier (for example after every batch).
        chunk_rows: rows per HDF5 chunk for a new file (an existing file keeps its own).
        fsync: fsync the file at each commit, so that commits survive power loss too.
        progress: show a progress bar when existing rows are copied into a larger file.
        convert_dtype: an existing file in another storage dtype (and the same key
            and layout otherwise) is rebuilt in `storage_dtype`, its stored rows cast
            (float16 -> float32 is exact; float32 -> float16 refuses values beyond
            the float16 range with CacheError and leaves the file as it was).
    """

    def __init__(
        self,
        path: str | Path,
        key: Mapping[str, Any],
        layers: Sequence[str],
        dim: int,
        poolings: Sequence[str] = ("mean", "std"),
        storage_dtype: str = "float16",
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        chunk_rows: int = layout.DEFAULT_CHUNK_ROWS,
        fsync: bool = True,
        progress: bool = False,
        convert_dtype: bool = False,
    ):
        self.path = Path(path)
        self.convert_dtype = convert_dtype
        requested = Header(key, layers, dim, poolings, storage_dtype, chunk_rows)
        self.flush_rows = layout.positive_int("flush_rows", flush_rows)
        self.fsync = fsync
        self.progress = progress
        self._file: h5py.File | None = None
        self._broken: CacheError | None = None
        self._index_redo: list[str] = []
        self._datasets: dict[str, h5py.Dataset] = {}
        self._clear_buffer()
        self._lock = WriterLock(self.path)
        self.read_only = False
        try:
            self._lock.acquire()
        except OSError as error:
            if error.errno not in _READ_ONLY_ERRNOS:
                raise layout.storage_error(self.path, error, "lock") from error
            if not self.path.is_file():
                raise CacheError(
                    f"cannot create cache {self.path}: its folder is not writable ({error}); "
                    "make it writable or use another --cache-dir"
                ) from error
            logger.info("%s: folder not writable, opening the cache read-only", self.path)
            self.read_only = True
        try:
            self._open(requested)
        except BaseException as error:
            self._close_file()
            self._lock.release()
            if isinstance(error, KeyError):  # h5py: "Unable to synchronously open object (...)"
                raise layout.damaged_error(self.path, error) from error
            raise

    # ----------------------------------------------------------------- opening

    def _open(self, requested: Header) -> None:
        """Open (or create, convert, mend) the file; an HDF5 object h5py cannot open is KeyError."""
        sidecar = self._sidecar()
        if sidecar.exists() and not self.read_only:
            logger.info("removing %s left by an interrupted writer", sidecar)
            sidecar.unlink()
        if not self.path.exists():
            logger.info("creating cache %s", self.path)
            self._replace_with(requested, [], source=None)
        header = layout.read_header(self.path)
        if header.storage_dtype != requested.storage_dtype:
            header = self._convert(header, requested)
        layout.check_key(self.path, header.differences(requested))
        self._add_fingerprints(header)
        self._load(header)
        self._mend_index()

    def _mend_index(self) -> None:
        """Rebuild the file without the rows whose index entry cannot be trusted.

        A slot or fingerprint chunk failing its checksum, or a slot out of range or
        shared, leaves its rows unknown: the rebuild copies every other row and
        leaves those missing, so they are extracted again (:meth:`repair` lists
        them). A read-only file is refused instead.
        """
        file = self._require_file()
        if not self._untrusted.any():
            return
        if self.read_only:
            layout.read_index(file, self.path)  # raises the reader's error, naming the fix
        self._index_redo = [self._ids[row] for row in np.flatnonzero(self._untrusted)]
        logger.warning(
            "%s: the row index is damaged (%s); %d row(s) will be extracted again",
            self.path,
            "; ".join(self._index_problems),
            len(self._index_redo),
        )
        self._rebuild(self._ids)

    def _add_fingerprints(self, header: Header) -> None:
        """Give a file built before fingerprints recorded the audio's path the current dataset.

        The first releases wrote no fingerprints, later ones none with the path (their
        rows' files are hashed once by the next ``ser extract``); a rebuild copies every row.
        """
        with layout.open_h5(self.path, "r") as source:
            if layout.has_path_fingerprints(source):
                return
            if self.read_only:
                logger.warning(
                    "%s predates path-bound audio fingerprints and its folder is read-only: its "
                    "rows cannot all be checked against their audio",
                    self.path,
                )
                return
            ids = layout.read_index(source, self.path, tolerant=True).ids
            logger.info("adding audio fingerprints to %s (%d row(s) kept)", self.path, len(ids))
            self._replace_with(header, ids, source=source)

    def _convert(self, header: Header, requested: Header) -> Header:
        """Rebuild the file in the requested storage dtype, or say how (see `convert_dtype`)."""
        same_dtype = dataclasses.replace(requested, storage_dtype=header.storage_dtype)
        layout.check_key(self.path, header.differences(same_dtype))
        old, new = header.storage_dtype, requested.storage_dtype
        self._refuse_read_only(f"convert it from {old} to {new}")
        if not self.convert_dtype:
            raise CacheKeyMismatchError(
                f"cache {self.path} stores {old}; this run asked for {new}. Ask for {old} to "
                f"keep adding to it (ser extract: --storage-dtype {old} or auto), or convert "
                f"it, keeping its rows (ser extract: --storage-dtype {new}; in Python: "
                "convert_dtype=True)"
            )
        converted = dataclasses.replace(header, storage_dtype=new)
        with layout.open_h5(self.path, "r") as source:
            ids = layout.read_index(source, self.path, tolerant=True).ids
            logger.warning(
                "converting cache %s from %s to %s (%d row(s) kept)", self.path, old, new, len(ids)
            )
            self._replace_with(converted, ids, source=source)
        return layout.read_header(self.path)

    def _load(self, header: Header) -> None:
        """Open the live file for writing and read the row state into memory.

        The feature datasets stay open, and their chunk cache holds two chunks per
        layer, so the partly filled last chunk of each layer stays in memory between
        commits. The file's blocks are reserved first (see :meth:`_reserve`).
        """
        chunk_bytes = header.chunk_rows * header.dim * np.dtype(header.storage_dtype).itemsize
        self._file = layout.open_h5(
            self.path,
            "r" if self.read_only else "r+",
            rdcc_nbytes=max(1 << 20, 2 * len(header.layers) * chunk_bytes),
            rdcc_nslots=_CACHE_SLOTS,
            rdcc_w0=1.0,
        )
        if not self.read_only:
            self._reserve()
        with layout.damage_as_error(self.path):
            self._datasets = {p: self._file[FEATURES][p] for p in header.poolings}
        self.header = header
        index = layout.read_index(self._file, self.path, tolerant=True)
        self._untrusted, self._index_problems = index.untrusted, index.problems
        self._ids: list[str] = index.ids
        self._row = {utt_id: row for row, utt_id in enumerate(self._ids)}
        self._slots = index.slots
        if index.fingerprints is not None:
            self._fingerprints = index.fingerprints
        else:  # a cache from before fingerprints, opened read-only: none recorded
            self._fingerprints = np.zeros(len(self._ids), dtype=layout.FINGERPRINT_DTYPE)

    def _reserve(self) -> None:
        """Allocate every block of the file before anything is written (see :mod:`.layout`).

        ``posix_fallocate`` never changes stored bytes: a file an older release built
        sparse gets its holes, so a full disk is met here, not in the middle of a commit.
        """
        fd = self._require_file().id.get_vfd_handle()
        try:
            layout.reserve(fd, os.fstat(fd).st_size)  # False where the system cannot reserve
        except OSError as error:
            raise layout.storage_error(self.path, error, "reserve disk space for") from error

    def _sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".partial")

    def _replace_with(
        self,
        header: Header,
        ids: list[str],
        source: h5py.File | None,
        rows: np.ndarray | None = None,
    ) -> None:
        """Build a complete new file beside the cache, then rename it over the cache."""
        sidecar = self._sidecar()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise layout.storage_error(self.path, error, "create the folder of") from error
        try:
            layout.build(
                sidecar,
                header,
                ids,
                source=source,
                progress=self.progress,
                rows=rows,
                cache=self.path,
            )
            self._close_file()
            os.replace(sidecar, self.path)
        except BaseException:
            sidecar.unlink(missing_ok=True)
            raise
        layout.fsync_dir(self.path.parent)

    def _rebuild(self, ids: list[str], rows: np.ndarray | None = None) -> None:
        """:meth:`_replace_with` the live file (same header, `ids`, copying `rows`), reopened."""
        self._replace_with(self.header, ids, source=self._require_file(), rows=rows)
        self._load(self.header)

    def _refuse_read_only(self, action: str) -> None:
        """Refuse `action` (a phrase before "cache PATH") when the folder is not writable."""
        if not self.read_only:
            return
        raise CacheError(
            f"cannot {action} cache {self.path}: its folder is not writable (no lock file "
            f"{self._lock.path} can be made). Make the folder writable or use another --cache-dir."
        )

    # ---------------------------------------------------------------- metadata

    @property
    def ids(self) -> list[str]:
        """Every registered utterance id (complete or not), in file order."""
        return list(self._ids)

    @property
    def n_complete(self) -> int:
        """Rows committed as complete."""
        return int((self._slots >= 0).sum())

    def add_ids(self, utt_ids: Iterable[str]) -> int:
        """Register utterances as rows (new ones appended, none dropped); returns how many are new.

        New rows change the file's structure, so the file is rebuilt beside the
        old one (copying the stored rows) and renamed over it.
        """
        known = set(self._row)
        new: list[str] = []
        for utt_id in utt_ids:
            if not isinstance(utt_id, str) or not utt_id:
                raise ConfigError(f"utterance id {utt_id!r} must be a non-empty string")
            if utt_id not in known:
                known.add(utt_id)
                new.append(utt_id)
        if not new:
            return 0
        self._refuse_read_only(f"add {len(new)} utterance(s) to")
        self.flush()
        logger.info("adding %d row(s) to %s (%d stored)", len(new), self.path, len(self._ids))
        self._rebuild(self._ids + new)
        return len(new)

    def set_manifest_digest(self, digest: str) -> None:
        """Store the digest of the manifest rows this cache covers (a root attribute)."""
        layout.check_digest(digest)
        if digest == self.header.manifest_digest:
            return
        if self.read_only:  # the digest only describes the last manifest; nothing to refuse
            logger.info("%s is read-only: its manifest digest is left as it was", self.path)
            return
        layout.write_digest(self._require_file(), digest)
        self._sync()
        self.header.manifest_digest = digest

    def fingerprints(
        self, utt_ids: Iterable[str], failed: bool = False
    ) -> dict[str, Fingerprint | None]:
        """The recorded audio fingerprint of each committed row among `utt_ids`.

        Complete rows are included, failed ones too if `failed`; missing rows and
        ids that are not rows are not. None: the row has no fingerprint (written
        before fingerprints were recorded, or its audio could not be read).
        """
        out: dict[str, Fingerprint | None] = {}
        for utt_id in utt_ids:
            row = self._row.get(utt_id)
            if row is None:
                continue
            state = self._slots[row]
            if state >= 0 or (failed and state == FAILED):
                out[utt_id] = layout.fingerprint_of(self._fingerprints[row])
        return out

    def record_fingerprints(self, fingerprints: Mapping[str, Fingerprint]) -> None:
        """Store the audio fingerprints of committed rows in place (their features are kept).

        Raises:
            CacheError: an id is not a committed row of this file.
        """
        if not fingerprints:
            return
        self._require_file()
        self._refuse_read_only(f"record {len(fingerprints)} audio fingerprint(s) in")
        rows, records = [], []
        for utt_id, fingerprint in fingerprints.items():
            row = self._row.get(utt_id)
            if row is None or self._slots[row] == MISSING:
                raise CacheError(f"utterance {utt_id!r} is not a committed row of {self.path}")
            rows.append(row)
            records.append(layout.fingerprint_records([fingerprint])[0])
        before = self._fingerprints[rows].copy()
        self._fingerprints[rows] = records
        try:
            self._write_fingerprints(np.array(rows, dtype=np.int64))
            self._sync()
        except (OSError, RuntimeError) as error:
            self._fingerprints[rows] = before
            raise self._stop(error, "record audio fingerprints in") from error

    def invalidate(self, utt_ids: Iterable[str]) -> int:
        """Turn committed rows (complete or failed) back into missing rows; returns how many.

        Used when a row's audio changed since it was extracted. The file is rebuilt
        beside the old one with those rows missing (as :meth:`repair` does), so a
        reader that opened the old file keeps reading the old file, and no slot it
        may read is ever reused under it. Ids that are not committed rows are ignored.
        """
        self.flush()
        rows = [
            self._row[u] for u in utt_ids if u in self._row and self._slots[self._row[u]] != MISSING
        ]
        if not rows:
            return 0
        self._refuse_read_only(f"re-extract {len(set(rows))} changed utterance(s) of")
        changed = sorted(set(rows))
        kept = np.arange(len(self._ids), dtype=np.int64)
        kept[changed] = -1
        self._rebuild(self._ids, kept)
        logger.info("%d row(s) of %s marked for extraction again", len(changed), self.path)
        return len(changed)

    def missing(self, utt_ids: Iterable[str], retry: bool = False) -> list[str]:
        """The ids (in the given order) that still need features.

        Complete rows and rows buffered in this writer are done; failed rows are
        done too unless `retry`; ids that are not rows yet are missing. A read-only
        writer does not retry failed rows and refuses when any row is missing.
        """
        retry = retry and not self.read_only
        out = []
        for utt_id in utt_ids:
            row = self._row.get(utt_id)
            if row is None:
                out.append(utt_id)
                continue
            if row in self._buffered_rows or row in self._failures:
                continue
            state = self._slots[row]
            if state == MISSING or (retry and state == FAILED):
                out.append(utt_id)
        if out:
            self._refuse_read_only(f"extract {len(out)} missing utterance(s) into")
        return out

    def repair(self, progress: bool = False, add_checksums: bool = False) -> list[str]:
        """Un-mark corrupt rows (:func:`.inspection.corrupt_rows`); their ids, in file order.

        The file is rebuilt beside the old one (crash-safe) with those rows not
        complete, their old chunks left behind. With `add_checksums`, a file built
        without checksums is rebuilt (with them) even when nothing is corrupt.
        """
        self.flush()
        mended, self._index_redo = self._index_redo, []
        redone = self._repair_features(progress, add_checksums)
        return sorted({*mended, *redone}, key=self._row.__getitem__)

    def _repair_features(self, progress: bool, add_checksums: bool) -> list[str]:
        """:meth:`repair` for the rows whose features are corrupt (the index is mended on open)."""
        file = self._require_file()
        bad = sorted(inspection.corrupt_rows(file, self.header, self._slots, progress))
        if bad:
            action = f"re-extract {len(bad)} corrupt row(s) of"
            note = f"{len(bad)} corrupt row(s) will be extracted again"
        elif inspection.damaged_free_chunks(file, self.header, self._slots):
            action = "rebuild (a chunk holding no row is damaged)"
            note = "a chunk holding no row is damaged; rebuilding the file"
        elif add_checksums and not inspection.has_checksums(file):
            action, note = "add checksums to", "rebuilding it with per-chunk checksums"
        else:
            return []
        self._refuse_read_only(action)
        logger.warning("%s: %s", self.path, note)
        ids = [self._ids[row] for row in bad]
        rows = np.arange(len(self._ids), dtype=np.int64)
        rows[bad] = -1
        self._rebuild(self._ids, rows)
        return ids

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Drop every row whose id is not in `keep` (a rebuild); the dropped ids, in file order."""
        wanted = set(keep)
        kept = [row for row, utt_id in enumerate(self._ids) if utt_id in wanted]
        dropped = [utt_id for utt_id in self._ids if utt_id not in wanted]
        if not dropped:
            return []
        self._refuse_read_only(f"drop {len(dropped)} row(s) from")
        self.flush()
        self._rebuild([self._ids[row] for row in kept], np.array(kept, dtype=np.int64))
        return dropped

    # ------------------------------------------------------------------ writing

    def write(
        self,
        ids: Sequence[str],
        arrays: Mapping[str, np.ndarray],
        fingerprints: Sequence[Fingerprint | None] | None = None,
    ) -> None:
        """Buffer pooled features of `ids`: one (n, n_layers, dim) array per pooling.

        Rows are committed at the latest every `flush_rows` rows and on close.
        `fingerprints` (one per id, None for unknown) say which audio each row
        came from; they are committed with the features.

        Raises:
            CacheError: an id is not a row, is complete or repeats; a pooling is
                missing or unknown; a shape is wrong; a value is NaN/inf (also after
                the cast to the storage dtype).
        """
        ids = list(ids)
        if not ids:
            return
        self._require_file()
        rows = [self._writable_row(utt_id) for utt_id in ids]
        self._refuse_read_only("write features to")
        if len(set(rows)) != len(rows):
            raise CacheError(f"write() got repeated utterance ids for {self.path}")
        prepared = self._prepare(ids, arrays)
        if fingerprints is not None:
            if len(fingerprints) != len(ids):
                raise CacheError(
                    f"write() got {len(fingerprints)} fingerprint(s) for {len(ids)} row(s)"
                )
            records = layout.fingerprint_records(list(fingerprints))
            self._buffer_fingerprints.update(zip(rows, records, strict=True))
        self._buffered_rows.update(rows)
        self._buffer_rows.extend(rows)
        for pooling, array in prepared.items():
            self._buffer_data[pooling].append(array)
        if len(self._buffer_rows) >= self.flush_rows:
            self.flush()

    def fail(self, utt_id: str, reason: str, fingerprint: Fingerprint | None = None) -> None:
        """Record that `utt_id` could not be processed (committed with the next flush).

        `fingerprint`: the audio that failed, when it could be read.
        """
        self._require_file()
        row = self._writable_row(utt_id)
        self._refuse_read_only("record a failure in")
        self._failures[row] = layout.encode_reason(reason)
        if fingerprint is not None:
            self._buffer_fingerprints[row] = layout.fingerprint_records([fingerprint])[0]
        logger.info("%s failed: %s", utt_id, reason)

    def _writable_row(self, utt_id: str) -> int:
        row = self._row.get(utt_id)
        if row is None:
            raise CacheError(
                f"utterance {utt_id!r} is not a row of {self.path}; add_ids() it first"
            )
        if self._slots[row] >= 0:
            raise CacheError(f"utterance {utt_id!r} is already complete in {self.path}")
        if row in self._buffered_rows or row in self._failures:
            raise CacheError(f"utterance {utt_id!r} was already given to this writer")
        return row

    def _prepare(self, ids: list[str], arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check the arrays of one write() and cast them to the storage dtype."""
        poolings = self.header.poolings
        if set(arrays) != set(poolings):
            raise CacheError(
                f"write() got poolings {sorted(arrays)} for {self.path}; expected {poolings}"
            )
        expected = (len(ids), len(self.header.layers), self.header.dim)
        out = {}
        for pooling in poolings:
            array = np.asarray(arrays[pooling], dtype=np.float32)
            if array.ndim == 2 and expected[1] == 1:
                array = array[:, None, :]
            if array.shape != expected:
                raise CacheError(
                    f"{pooling} features have shape {array.shape}; {self.path} expects "
                    f"{expected} (utterances, layers, dim)"
                )
            self._check_range(ids, pooling, array)
            out[pooling] = array.astype(self.header.storage_dtype)
        return out

    def _check_range(self, ids: list[str], pooling: str, array: np.ndarray) -> None:
        """Refuse NaN/inf, and values the storage dtype would turn into inf."""
        limit = float(np.finfo(self.header.storage_dtype).max)
        if np.isfinite(array).all() and float(np.abs(array).max(initial=0.0)) <= limit:
            return
        flat = array.reshape(len(ids), -1)
        not_finite = ~np.isfinite(flat).all(axis=1)
        bad_rows = not_finite | (np.abs(np.where(np.isfinite(flat), flat, 0)) > limit).any(axis=1)
        bad = [utt_id for utt_id, is_bad in zip(ids, bad_rows, strict=True) if is_bad]
        hint = "NaN or inf in the features"
        if not not_finite.any():
            hint = (
                f"values beyond the {self.header.storage_dtype} range (|x| > {limit:g}); store "
                "them as float32: `ser extract --storage-dtype float32` converts this cache, "
                "keeping its rows (in Python: storage_dtype='float32', convert_dtype=True)"
            )
        raise CacheError(f"{pooling} features of {bad[:5]} ({len(bad)} row(s)): {hint}")

    # --------------------------------------------------------------- committing

    def flush(self) -> None:
        """Commit buffered rows and failures: data first, synced, then the completion mask.

        Raises:
            CacheError: a write or sync failed (a full disk...). The rows of this
                commit are then not complete on disk, and the writer is closed.
        """
        if not self._buffer_rows and not self._failures:
            return
        file = self._require_file()
        rows = np.array(self._buffer_rows, dtype=np.int64)
        slots = self._free_slots(len(rows))
        failed_rows = np.array(sorted(self._failures), dtype=np.int64)
        try:
            if len(rows):
                self._write_features(slots)
            for row in failed_rows:
                file[REASON][row] = self._failures[int(row)]
            self._commit_fingerprints()
            self._sync()
        except (OSError, RuntimeError) as error:
            raise self._stop(error, "write features to") from error
        self._slots[rows] = slots
        self._slots[failed_rows] = FAILED
        try:
            self._write_states(np.concatenate([rows, failed_rows]))
            self._sync()
        except (OSError, RuntimeError) as error:
            raise self._stop(error, "mark rows complete in") from error
        logger.debug("committed %d row(s), %d failure(s)", len(rows), len(failed_rows))
        self._clear_buffer()

    def _write_features(self, slots: np.ndarray) -> None:
        """Write the buffered rows (in buffer order) at `slots`, one block per run of slots."""
        for pooling in self.header.poolings:
            data = np.concatenate(self._buffer_data[pooling])
            dataset = self._datasets[pooling]
            for start, stop in layout.contiguous_runs(slots):
                block = np.ascontiguousarray(data[start:stop].swapaxes(0, 1))
                dataset[:, slots[start] : slots[stop - 1] + 1] = block

    def _commit_fingerprints(self) -> None:
        """Write the buffered rows' fingerprints (rows without one get the empty record)."""
        rows = np.array(sorted({*self._buffer_rows, *self._failures}), dtype=np.int64)
        for row in rows:
            self._fingerprints[row] = self._buffer_fingerprints.get(int(row), _NO_FINGERPRINT)
        self._write_fingerprints(rows)

    def _write_fingerprints(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        low, high = int(rows.min()), int(rows.max()) + 1
        self._require_file()[layout.FINGERPRINT][low:high] = self._fingerprints[low:high]

    def _free_slots(self, count: int) -> np.ndarray:
        """The `count` lowest slots no complete row points at (leftovers of killed runs reused)."""
        capacity = self._require_file()[SLOT].shape[0]
        taken = np.zeros(capacity, dtype=bool)
        taken[self._slots[self._slots >= 0]] = True
        free = np.flatnonzero(~taken)[:count]
        if len(free) < count:
            raise CacheError(f"{self.path} has no free slot left for {count} row(s)")
        return free

    def _write_states(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        low, high = int(rows.min()), int(rows.max()) + 1
        self._require_file()[SLOT][low:high] = self._slots[low:high].astype(np.int32)

    def _sync(self) -> None:
        file = self._require_file()
        file.flush()
        if self.fsync:
            os.fsync(file.id.get_vfd_handle())

    def _clear_buffer(self) -> None:
        self._buffer_rows: list[int] = []
        self._buffered_rows: set[int] = set()
        self._buffer_data: defaultdict[str, list[np.ndarray]] = defaultdict(list)
        self._failures: dict[int, bytes] = {}
        self._buffer_fingerprints: dict[int, np.void] = {}

    # ------------------------------------------------------------------ closing

    def _stop(self, error: BaseException, action: str) -> CacheError:
        """Give up after a failed write: drop the buffer and the file, return the error to raise.

        Nothing more is written: the completion mask on disk still says what was
        complete before this commit (anything HDF5 still flushes on close is data of
        rows not marked complete, or the mask of rows whose data was synced).
        """
        self._broken = layout.storage_error(self.path, error, action)
        self._clear_buffer()
        # HDF5 retries the failed writes on close and h5py reports each failure as an
        # "exception ignored" (a page of tracebacks); the one error raised says it all.
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: logger.debug("on close: %s", unraisable.exc_value)
        try:
            with contextlib.suppress(Exception):
                self._close_file()
            gc.collect()
        finally:
            sys.unraisablehook = hook
        self._datasets = {}
        self._file = None
        return self._broken

    def _require_file(self) -> h5py.File:
        if self._broken is not None:
            raise CacheError(f"the writer of {self.path} stopped after an error: {self._broken}")
        if self._file is None:
            raise CacheError(f"the writer of {self.path} is closed")
        return self._file

    def _close_file(self) -> None:
        self._datasets = {}
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def close(self) -> None:
        """Commit what is buffered, close the file and release the lock."""
        if not self._lock.held and self._file is None:
            return
        try:
            if self._file is not None and self._broken is None:
                self.flush()
        finally:
            self._close_file()
            self._lock.release()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception:
            logger.exception("could not commit buffered rows of %s", self.path)


def rows_to_prune(path: Path, ids: Sequence[str], keep: Iterable[str], yes: bool) -> list[str]:
    """The ids of `ids` (a cache's rows) that `keep` does not list, after two sanity checks.

    A manifest sharing no id with the cache (another corpus's) is refused, as is
    one that would remove more than half of the rows unless `yes`: both are far
    more likely a wrong manifest than files removed from a corpus.

    Raises:
        CacheError: no id in common, or more than half removed without `yes`.
    """
    wanted = set(keep)
    dropped = [utt_id for utt_id in ids if utt_id not in wanted]
    if ids and len(dropped) == len(ids):
        example = next(iter(sorted(wanted)), "(none)")
        raise CacheError(
            f"refusing to prune {path}: the manifest(s) share no utterance id with its "
            f"{len(ids)} row(s) (cache e.g. {ids[0]!r}, manifest e.g. {example!r}); is it the "
            "manifest of another corpus? To empty the cache, delete the file"
        )
    if 2 * len(dropped) > len(ids) and not yes:
        raise CacheError(
            f"refusing to prune {path}: it would remove {len(dropped)} of {len(ids)} row(s), "
            "more than half; check the manifest(s), or pass --yes to remove them"
        )
    return dropped


def open_existing(path: str | Path, progress: bool = False) -> CacheWriter:
    """A writer on an existing cache file with its own key and layout (for repair and prune).

    Raises:
        CacheError: no file, or a damaged one; CacheLockedError: another writer holds it.
    """
    header = layout.read_header(Path(path))
    return CacheWriter(
        path,
        header.key,
        header.layers,
        header.dim,
        header.poolings,
        header.storage_dtype,
        chunk_rows=header.chunk_rows,
        progress=progress,
    )
