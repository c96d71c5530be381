"""Reading a feature cache: one layer for every utterance, or every layer for a few.

A reader takes a snapshot of the completion mask when it opens; rows a writer
completes later are not seen, and rows it saw complete never change, so reading
while a writer appends is safe. Rows whose audio changed since extraction are
turned missing by a rebuild of the file (:meth:`ssl_ser.cache.CacheWriter.invalidate`),
so a reader opened before keeps reading the old file, whose slots are never reused.

A reader never hands out features it cannot vouch for: a row index that fails
the checks of :func:`ssl_ser.cache.layout.read_index` (made when it opens), a chunk
that fails its checksum, or rows holding NaN/inf, are a CacheError naming the
cache, the rows and the fix (``ser cache verify --repair``, then ``ser extract``),
not numbers.

Reads return float32 whatever the storage dtype, cast and checked for NaN/inf
piece by piece (:data:`PIECE_BYTES`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssl_ser.cache import layout
from ssl_ser.cache.layout import FAILED, FEATURES, REASON, Header, HeaderFields
from ssl_ser.errors import CacheError, ManifestError, UnknownChoiceError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ROW_COLUMN = "cache_row"
# Slots at most this far apart are read as one span: reading a few unwanted rows
# (2 KiB each at 1,024 float16) costs less than another HDF5 read call.
MERGE_GAP = 16
# Spans are read and converted to float32 in pieces of at most this many stored bytes:
# a piece cast contiguously while in the CPU cache, then moved as float32 rows, took
# 5 ms per 2 M values against 8 ms cast while scattered into file order, which cost
# more than the read (benchmarks/cache_bench.py).
PIECE_BYTES = 4 << 20
# Below this many separate spans, prefetch hints are not worth their system calls.
PREFETCH_MIN_RUNS = 8
# A chunk failing its checksum is read again (a writer may be rewriting it) before it
# counts as damaged: this many reads in all, waiting 0.05 s, 0.1 s, ... in between.
TORN_READ_ATTEMPTS = 4
TORN_READ_WAIT_S = 0.05


class CacheReader(HeaderFields):
    """Read-only access to one cache file (``cache.open``); with `key`, refused for another key.

    Raises:
        CacheError: no file, a damaged file, or not an ssl-ser cache.
        CacheKeyMismatchError: `key` differs; the message names each field.
    """

    def __init__(self, path: str | Path, key: Mapping[str, Any] | None = None):
        self.path = Path(path)
        # No chunk cache: partial chunks are then read straight from disk, only the rows asked.
        self._file = layout.open_h5(self.path, "r", rdcc_nbytes=0)
        try:
            with layout.damage_as_error(self.path):
                self.header = Header.read(self._file, self.path)
            if key is not None:
                requested = layout.normalize_key(key)
                layout.check_key(self.path, layout.key_differences(self.header.key, requested))
            index = layout.read_index(self._file, self.path)
            self._datasets = self._open_datasets(len(index.ids))
        except BaseException:
            self._file.close()
            raise
        self.all_ids: list[str] = index.ids
        self._slots = index.slots
        prints = index.fingerprints
        self.complete: np.ndarray = self._slots >= 0
        self._fingerprints = None if prints is None else prints[self.complete]
        self.ids: list[str] = [self.all_ids[row] for row in np.flatnonzero(self.complete)]
        self._complete_slots = self._slots[self.complete]
        self._position = {utt_id: position for position, utt_id in enumerate(self.ids)}
        self._offsets: dict[str, dict[tuple[int, int], int]] = {}

    def _open_datasets(self, n_rows: int) -> dict[str, Any]:
        """The feature dataset of each pooling, opened and checked against the header."""
        expected = (len(self.header.layers), max(n_rows, 1), self.header.dim)
        datasets = {}
        with layout.damage_as_error(self.path):
            for pooling in self.header.poolings:
                dataset = self._file[FEATURES][pooling]
                if dataset.shape != expected:
                    raise CacheError(
                        f"{self.path}: /{FEATURES}/{pooling} has shape {dataset.shape}; expected "
                        f"{expected}. Delete the file and re-run `ser extract` to rebuild it."
                    )
                datasets[pooling] = dataset
        return datasets

    # ---------------------------------------------------------------- metadata

    @property
    def dim(self) -> int:
        """Feature dimension of every layer."""
        return self.header.dim

    @property
    def storage_dtype(self) -> str:
        """``float16`` or ``float32``; reads always return float32."""
        return self.header.storage_dtype

    @property
    def manifest_digest(self) -> str:
        """Digest of the manifest rows the writer was given ('' if never set)."""
        return self.header.manifest_digest

    @property
    def toolkit_version(self) -> str:
        """Version of ssl-ser that built the file."""
        return self.header.toolkit_version

    @property
    def shape(self) -> tuple[int, int, int]:
        """(complete rows, layers, dim) of each pooling."""
        return (len(self.ids), len(self.header.layers), self.header.dim)

    @property
    def fingerprints(self) -> np.ndarray | None:
        """Audio fingerprints of the complete rows, aligned with :attr:`ids`, or None.

        A structured array of :data:`ssl_ser.cache.layout.FINGERPRINT_DTYPE`
        (``size``, ``mtime_ns``, ``blake2b``; an empty ``blake2b``: none recorded
        for that row). None for a file built before fingerprints were stored. Read
        when the reader opens, with the completion mask, so both describe one moment.
        """
        return self._fingerprints

    @cached_property
    def failures(self) -> pd.DataFrame:
        """Rows whose audio could not be processed: columns ``utt_id`` and ``reason``."""
        import pandas as pd

        rows = np.flatnonzero(self._slots == FAILED)
        with layout.damage_as_error(self.path):
            reasons = self._file[REASON][rows] if len(rows) else []
        return pd.DataFrame(
            {
                "utt_id": [self.all_ids[row] for row in rows],
                "reason": [bytes(r).decode("utf-8", errors="replace") for r in reasons],
            },
            columns=["utt_id", "reason"],
        )

    # ------------------------------------------------------------------ reading

    def read(
        self, layer: str | int, pooling: str = "mean", ids: Iterable[str] | None = None
    ) -> np.ndarray:
        """One layer as float32 (n, dim): every complete row in file order, or `ids` in order."""
        index = self.layer_index(layer)
        return self._gather(pooling, self._slots_of(ids), index)

    def read_rows(self, ids: Iterable[str], pooling: str = "mean") -> np.ndarray:
        """Every layer of `ids` as float32 (n, n_layers, dim), in the order given."""
        return self._gather(pooling, self._slots_of(ids), None)

    def layer_index(self, layer: str | int) -> int:
        """The storage index of a layer given by name or index (negative counts from the end)."""
        layers = self.header.layers
        if isinstance(layer, str) and layer in layers:
            return layers.index(layer)
        is_index = isinstance(layer, int | np.integer) and not isinstance(layer, bool)
        if is_index and -len(layers) <= layer < len(layers):
            return int(layer) % len(layers)
        raise UnknownChoiceError("layer", layer, layers, where=str(self.path))

    def join(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """Manifest rows that have complete features, in reader order, plus ``cache_row``.

        ``cache_row`` indexes the arrays :meth:`read` returns without `ids`, so
        ``reader.read(layer)[joined.cache_row]`` lines up with the joined rows.
        """
        if "utt_id" not in manifest.columns:
            raise ManifestError("manifest lacks column utt_id, needed to join with a cache")
        position = manifest["utt_id"].map(self._position)
        keep = position.notna()
        joined = manifest.loc[keep].assign(**{ROW_COLUMN: position[keep].astype("int64")})
        dropped = int((~keep).sum())
        if dropped:
            logger.info("%d manifest row(s) have no complete features in %s", dropped, self.path)
        return joined.sort_values(ROW_COLUMN, kind="stable").reset_index(drop=True)

    def _slots_of(self, ids: Iterable[str] | None) -> np.ndarray:
        if ids is None:
            return self._complete_slots
        ids = [ids] if isinstance(ids, str) else list(ids)
        positions = [self._position.get(utt_id, -1) for utt_id in ids]
        absent = [utt_id for utt_id, pos in zip(ids, positions, strict=True) if pos < 0]
        if absent:
            raise CacheError(
                f"{len(absent)} id(s) have no complete features in {self.path}, e.g. {absent[:5]}"
            )
        return self._complete_slots[np.array(positions, dtype=np.int64)]

    def _gather(self, pooling: str, slots: np.ndarray, layer: int | None) -> np.ndarray:
        """Read the rows at `slots` (one layer, or all if None) as float32, in `slots` order.

        Slots are visited sorted and close ones are read as one span, so a full
        layer is one sequential read and a scattered subset touches only its rows.
        A chunk that fails its checksum is read again after a short wait: a writer
        appending beside this reader rewrites the chunk holding its newest rows, and a
        read landing mid-rewrite sees new data with the old checksum. The rows this
        reader may read never change, so a chunk that fails every time is damaged.
        """
        if pooling not in self.header.poolings:
            raise UnknownChoiceError("pooling", pooling, self.header.poolings, where=str(self.path))
        dataset = self._datasets[pooling]
        for attempt in range(1, TORN_READ_ATTEMPTS + 1):
            try:
                out, finite = self._gather_spans(dataset, pooling, slots, layer)
                break
            except (OSError, RuntimeError) as error:
                if attempt == TORN_READ_ATTEMPTS:
                    raise CacheError(
                        f"{self.path}: {pooling} features cannot be read "
                        f"({layout.first_line(error)}); a chunk is damaged. Run `ser cache "
                        f"verify --repair {self.path}` to send its rows back to extraction, "
                        "then `ser extract` to redo them."
                    ) from error
                logger.debug("%s: read failed (%s); reading again", self.path, error)
                time.sleep(TORN_READ_WAIT_S * attempt)
        self._check_finite(finite, slots, pooling)
        return out

    def _check_finite(self, finite: np.ndarray, slots: np.ndarray, pooling: str) -> None:
        """Refuse rows holding NaN/inf (bytes changed on disk): name them and the fix.

        `finite` says, per row read (aligned with `slots`), whether all its values are.
        """
        if finite.all():
            return
        id_of_slot = dict(zip(self._complete_slots.tolist(), self.ids, strict=True))
        bad = sorted({id_of_slot[int(slot)] for slot in slots[~finite]})
        raise CacheError(
            f"{self.path}: {pooling} features of {len(bad)} row(s) hold NaN/inf, e.g. "
            f"{bad[:5]}; the cache is damaged. Run `ser cache verify --repair {self.path}` "
            "to send them back to extraction, then `ser extract` to redo them."
        )

    def _gather_spans(
        self, dataset: Any, pooling: str, slots: np.ndarray, layer: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_gather` without the checks: the rows of `slots` and which are finite.

        Finiteness is computed piece by piece while each converted piece is in the
        CPU cache, not in a second pass over the whole array.
        """
        n_layers, _, dim = dataset.shape
        tail = (dim,) if layer is not None else (n_layers, dim)
        out = np.empty((len(slots), *tail), dtype=np.float32)
        finite = np.empty(len(slots), dtype=bool)
        order = np.argsort(slots, kind="stable")
        in_order = np.array_equal(order, np.arange(len(slots)))
        ordered = slots[order]
        runs = layout.contiguous_runs(ordered, max_gap=MERGE_GAP)
        self._prefetch(pooling, ordered, runs, range(n_layers) if layer is None else [layer])
        row_bytes = int(np.prod(tail)) * dataset.dtype.itemsize
        for start, stop in _pieces(ordered, runs, max(1, PIECE_BYTES // row_bytes)):
            first, last = int(ordered[start]), int(ordered[stop - 1])
            if layer is None:
                span = dataset[:, first : last + 1].swapaxes(0, 1)
            else:
                span = dataset[layer, first : last + 1]
            if last - first + 1 != stop - start:
                span = span[ordered[start:stop] - first]
            if in_order:
                converted = out[start:stop]
                np.copyto(converted, span, casting="safe")  # exact: float16/32 -> float32
                finite[start:stop] = _finite_rows(converted)
            else:  # convert contiguously, then move whole float32 rows into place
                converted = np.empty(span.shape, dtype=np.float32)
                np.copyto(converted, span, casting="safe")  # exact: float16/32 -> float32
                out[order[start:stop]] = converted
                finite[order[start:stop]] = _finite_rows(converted)
        return out, finite

    def _prefetch(
        self, pooling: str, ordered: np.ndarray, runs: list[tuple[int, int]], layers: Iterable[int]
    ) -> None:
        """Hint the kernel to fetch the bytes of scattered rows ahead, all at once.

        Read one by one, scattered rows each wait for the disk; announced with
        ``posix_fadvise(WILLNEED)`` the kernel fetches them in parallel (about 5x
        faster cold, see benchmarks/cache_bench.py). Only a hint: HDF5 still reads.
        """
        offsets = self._chunk_offsets(pooling) if len(runs) >= PREFETCH_MIN_RUNS else None
        if not offsets:
            return
        dataset = self._datasets[pooling]
        chunk_rows = dataset.chunks[1]
        row_bytes = dataset.shape[2] * dataset.dtype.itemsize
        fd = self._file.id.get_vfd_handle()
        layers = list(layers)
        for start, stop in runs:
            first, last = int(ordered[start]), int(ordered[stop - 1])
            for block in range(first // chunk_rows, last // chunk_rows + 1):
                base = block * chunk_rows
                low, high = max(first, base), min(last, base + chunk_rows - 1)
                for layer in layers:
                    offset = offsets[(layer, base)] + (low - base) * row_bytes
                    length = (high - low + 1) * row_bytes
                    os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)

    def _chunk_offsets(self, pooling: str) -> dict[tuple[int, int], int]:
        """File offset of every chunk of a pooling, by (layer, first slot); {} if unavailable."""
        if pooling not in self._offsets:
            table: dict[tuple[int, int], int] = {}
            dataset = self._datasets[pooling]
            if hasattr(os, "posix_fadvise") and hasattr(dataset.id, "chunk_iter"):

                def remember(chunk: Any) -> None:
                    table[chunk.chunk_offset[:2]] = chunk.byte_offset

                dataset.id.chunk_iter(remember)
            self._offsets[pooling] = table
        return self._offsets[pooling]

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        rows, layers, dim = self.shape
        return f"CacheReader({str(self.path)!r}, rows={rows}/{len(self.all_ids)}, layers={layers})"


def _finite_rows(values: np.ndarray) -> np.ndarray:
    """Per row of `values`, whether every value in it is finite (not NaN/inf)."""
    return np.isfinite(values.reshape(len(values), -1)).all(axis=1)


def _pieces(
    ordered: np.ndarray, runs: list[tuple[int, int]], max_slots: int
) -> list[tuple[int, int]]:
    """`runs` (index ranges of sorted `ordered` slots) split so none spans over `max_slots` slots.

    Reading and converting a span piece by piece keeps each float16 piece in the CPU
    cache; a piece is still one HDF5 read of neighbouring rows.
    """
    pieces = []
    for start, stop in runs:
        i = start
        while i < stop:
            j = start + int(np.searchsorted(ordered[start:stop], ordered[i] + max_slots))
            pieces.append((i, j))
            i = j
    return pieces
