"""What the ``ser cache`` commands show: a cache's summary and a full consistency check.

Files built before checksums are checked the same way; only NaN/inf can be found in
them, and :func:`notes` says that their checksums are absent.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from ssl_ser.cache import layout
from ssl_ser.cache.layout import FAILED, FEATURES, IDS, REASON, SLOT, Header
from ssl_ser.cache.reader import CacheReader
from ssl_ser.errors import CacheError


def disk_size(path: str | Path) -> int:
    """Bytes the file occupies on disk (unwritten slots of a sparse file take none)."""
    stat = os.stat(path)
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else blocks * 512


def info(path: str | Path) -> dict[str, Any]:
    """Key, layout, completeness, size and versions of one cache file.

    ``feature_version`` is what the key says the features are (None for a key
    without one; 1 for a key of ssl-ser 0.1.0, see :func:`layout.comparable_key`);
    ``toolkit_version`` is the ssl-ser that built the file.
    """
    with CacheReader(path) as reader:
        rows_complete, n_layers, dim = reader.shape
        return {
            "path": str(path),
            "key": reader.key,
            "layers": reader.layers,
            "poolings": reader.poolings,
            "dim": dim,
            "storage_dtype": reader.storage_dtype,
            "shape": [rows_complete, n_layers, dim],
            "rows_total": len(reader.all_ids),
            "rows_complete": rows_complete,
            "rows_failed": len(reader.failures),
            "manifest_digest": reader.manifest_digest,
            "feature_version": layout.comparable_key(reader.key).get(layout.FEATURE_VERSION_FIELD),
            "toolkit_version": reader.toolkit_version,
            "checksums": has_checksums(reader._file),
            "size_bytes": disk_size(path),
        }


def has_checksums(file: h5py.File) -> bool:
    """Whether every feature and index dataset of an open cache carries per-chunk checksums.

    Also requires the ids digest (see :mod:`.layout`): files built before index
    checksums have feature checksums only, and read as without.
    """
    datasets = [file[FEATURES][name] for name in file[FEATURES]] if FEATURES in file else []
    datasets += [file[name] for name in layout.INDEX if name in file]
    return (
        bool(datasets)
        and all(dataset.fletcher32 for dataset in datasets)
        and layout.IDS_DIGEST in file.attrs
    )


def notes(path: str | Path) -> list[str]:
    """Remarks on a sound cache that are not problems (checksums absent in an old file)."""
    with layout.open_h5(Path(path), "r") as file, layout.damage_as_error(Path(path)):
        if has_checksums(file):
            return []
    return [
        "checksums absent: built before per-chunk checksums on its features and row index, "
        "so only NaN/inf and inconsistent slots can be detected; `ser cache verify --repair` "
        "rebuilds it with them (rows kept)"
    ]


def verify(path: str | Path, progress: bool = False) -> list[str]:
    """Every problem found in a cache file (empty when it is sound).

    Checks the header, that datasets agree in length and shape, that ids are
    unique, that slots are valid and not shared, that failures have reasons, that
    the key and manifest digest are set, and that every chunk holding complete rows
    reads back with a valid checksum and holds no NaN/inf (one line per row).
    """
    path = Path(path)
    try:
        file = layout.open_h5(path, "r", rdcc_nbytes=0)
    except CacheError as error:
        return [str(error)]
    with file:
        try:
            with layout.damage_as_error(path):
                return _problems(file, path, progress)
        except CacheError as error:
            return [str(error)]


def _problems(file: h5py.File, path: Path, progress: bool) -> list[str]:
    """:func:`verify` of an open file; a CacheError is a problem that stops the check."""
    header = Header.read(file, path)
    problems = _structure_problems(file, header)
    if problems:
        return problems
    try:
        index = layout.read_index(file, path, tolerant=True)
    except CacheError as error:  # damaged ids: nothing more can be checked row by row
        return [str(error), *_header_problems(header)]
    problems += index.problems
    problems += _header_problems(header)
    problems += _reason_problems(file, index.slots)
    return problems + _value_problems(file, header, index.slots, index.ids, progress)


def _structure_problems(file: h5py.File, header: Header) -> list[str]:
    missing = [name for name in (IDS, SLOT, REASON) if name not in file]
    missing += [f"{FEATURES}/{p}" for p in header.poolings if f"{FEATURES}/{p}" not in file]
    if missing:
        return [f"missing dataset(s): {', '.join(missing)}"]
    capacity = max(len(file[IDS]), 1)
    problems = []
    for name in (SLOT, REASON):
        if file[name].shape != (capacity,):
            problems.append(f"{name} has shape {file[name].shape}; expected ({capacity},)")
    expected = (len(header.layers), capacity, header.dim)
    for pooling in header.poolings:
        dataset = file[FEATURES][pooling]
        if dataset.shape != expected or dataset.dtype != np.dtype(header.storage_dtype):
            problems.append(
                f"{FEATURES}/{pooling} is {dataset.shape} {dataset.dtype}; "
                f"expected {expected} {header.storage_dtype}"
            )
    return problems


def _header_problems(header: Header) -> list[str]:
    problems = []
    if not header.key:
        problems.append("the key is empty")
    empty = [field for field, value in header.key.items() if value == ""]
    if empty:
        problems.append(f"key field(s) without a value: {', '.join(empty)}")
    if not header.manifest_digest:
        problems.append("the manifest digest was never set")
    if not header.toolkit_version:
        problems.append("the toolkit version is not recorded")
    return problems


def _reason_problems(file: h5py.File, slots: np.ndarray) -> list[str]:
    failed = np.flatnonzero(slots == FAILED)
    if not len(failed):
        return []
    try:
        reasons = file[REASON][failed]
    except (OSError, RuntimeError) as error:
        return [f"the failure reasons cannot be read ({layout.first_line(error)})"]
    blank = int(sum(1 for reason in reasons if not bytes(reason).strip(b"\0 ")))
    return [f"{blank} failed row(s) have no reason"] if blank else []


def _value_problems(
    file: h5py.File, header: Header, slots: np.ndarray, ids: list[str], progress: bool
) -> list[str]:
    """One line per complete row whose features are corrupt (see :func:`corrupt_rows`)."""
    bad = corrupt_rows(file, header, slots, progress)
    problems = [
        f"{pooling} features of {ids[row]!r} {what}" for row, (pooling, what) in sorted(bad.items())
    ]
    free = damaged_free_chunks(file, header, slots)
    if free:
        problems.append(
            f"{free} chunk(s) holding no complete row fail their checksum (new rows could "
            "not be written there); --repair rebuilds the file, keeping every row"
        )
    return problems


def damaged_free_chunks(file: h5py.File, header: Header, slots: np.ndarray) -> int:
    """Chunks that hold no complete row and fail their checksum (rows would land there).

    A writer fills such a chunk by reading it first, so a damaged one would refuse
    every later write. Files without checksums have none to fail.
    """
    complete = np.asarray(slots)[np.asarray(slots) >= 0]
    damaged = 0
    for pooling in header.poolings:
        dataset = file[FEATURES][pooling]
        block_rows = dataset.chunks[1]
        used = set((complete // block_rows).tolist())
        for block in range(math.ceil(dataset.shape[1] / block_rows)):
            if block in used:
                continue
            start = block * block_rows
            try:
                dataset[:, start : min(start + block_rows, dataset.shape[1])]
            except (OSError, RuntimeError):
                damaged += 1
    return damaged


def corrupt_rows(
    file: h5py.File, header: Header, slots: np.ndarray, progress: bool = False
) -> dict[int, tuple[str, str]]:
    """Complete rows whose features cannot be trusted, with why: {row: (pooling, what)}.

    Reads every chunk (one layer, ``chunk_rows`` slots) that holds complete rows,
    a block of slots of every layer at once, and layer by layer only where that
    fails. A chunk that fails its checksum (or cannot be read) makes every
    complete row in it corrupt; a row with NaN/inf in any layer is corrupt too.
    """
    slots = np.asarray(slots, dtype=np.int64)
    complete = np.flatnonzero(slots >= 0)
    row_of_slot = dict(zip(slots[complete].tolist(), complete.tolist(), strict=True))
    used = np.sort(slots[complete])
    bad: dict[int, tuple[str, str]] = {}  # by slot
    blocks = sum(len(np.unique(used // file[FEATURES][p].chunks[1])) for p in header.poolings)
    # no bar for a file without complete rows (a new cache): it has nothing to count
    bar = tqdm(desc="verify", unit="block", total=blocks, disable=not progress or not blocks)
    with bar:
        for pooling in header.poolings:
            dataset = file[FEATURES][pooling]
            block_rows = dataset.chunks[1]
            for block in np.unique(used // block_rows):
                start = int(block) * block_rows
                stop = min(start + block_rows, dataset.shape[1])
                wanted = used[(used >= start) & (used < stop)]
                try:
                    data = dataset[:, start:stop]
                except (OSError, RuntimeError):
                    data = _read_layers(dataset, start, stop, header.layers, wanted, bad, pooling)
                for slot in wanted[_non_finite(data[:, wanted - start])].tolist():
                    bad.setdefault(slot, (pooling, "hold NaN/inf"))
                bar.update()
    return {row_of_slot[slot]: why for slot, why in bad.items()}


def _read_layers(
    dataset: h5py.Dataset,
    start: int,
    stop: int,
    layers: list[str],
    wanted: np.ndarray,
    bad: dict[int, tuple[str, str]],
    pooling: str,
) -> np.ndarray:
    """Slots [start, stop) layer by layer; unreadable chunks are NaN, their rows put in `bad`."""
    out = np.full((dataset.shape[0], stop - start, dataset.shape[2]), np.nan, dataset.dtype)
    for layer in range(dataset.shape[0]):
        try:
            out[layer] = dataset[layer, start:stop]
        except (OSError, RuntimeError) as error:
            # the Fletcher-32 filter is the only one: its failure is a bad checksum
            text = str(error).lower()
            why = (
                "fails its checksum" if "filter" in text or "checksum" in text else "cannot be read"
            )
            what = f"are in a chunk that {why} (layer {layers[layer]})"
            for slot in wanted.tolist():
                bad.setdefault(slot, (pooling, what))
    return out


def _non_finite(data: np.ndarray) -> np.ndarray:
    """Per column of a (layers, n, dim) block: does it hold NaN/inf? (exponent bits all set)."""
    if data.dtype == np.float16:
        bits, mask = data.view(np.uint16), np.uint16(0x7C00)
    elif data.dtype == np.float32:
        bits, mask = data.view(np.uint32), np.uint32(0x7F800000)
    else:
        return ~np.isfinite(data).all(axis=(0, 2))
    return ((bits & mask) == mask).any(axis=(0, 2))
