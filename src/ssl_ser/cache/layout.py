"""The on-disk layout of a feature cache: names, attributes, keys and file building.

One HDF5 file per (extractor config, corpus, condition). Its parts:

- ``/ids`` (rows,): utterance ids in registration order (the order ``add_ids`` saw them).
- ``/slot`` (rows,) int32: where a row's features live; ``MISSING`` (-1) not yet
  written, ``FAILED`` (-2) the audio could not be processed, ``>= 0`` complete, its
  pooled vectors are at that slot. This is the completion mask.
- ``/failure_reason`` (rows,) fixed-length bytes: why a ``FAILED`` row failed.
- ``/audio_fingerprint`` (rows,) compound ``size`` int64, ``mtime_ns`` int64,
  ``blake2b`` 32 hex bytes: the audio file a row's features (or its failure) came
  from (see :mod:`ssl_ser.fingerprint`); all zero / empty where none was recorded.
  A writer adds it to a cache built before it existed.
- ``/features/<pooling>`` (layers, slots, dim) float16 or float32, chunked one layer
  by ``chunk_rows`` slots. Chunks are allocated layer by layer, so one layer of
  every utterance is one sequential stretch of the file. Slots are handed out in
  write order, so a batch of rows lands in consecutive slots and is written in
  blocks, whatever its manifest order. Each chunk carries a Fletcher-32 checksum
  (HDF5's ``fletcher32`` filter): a chunk whose bytes changed on disk fails to read
  instead of handing out wrong numbers. Its size never changes (data + 4 bytes), so a
  rewritten chunk stays where it was and the chunk index is never touched. Files
  built before checksums (ssl-ser 0.1.0) have none and still open; any rebuild
  (new rows, ``ser cache prune``, ``ser cache verify --repair``) adds them.
  Unwritten slots hold NaN, so a row marked complete without its data is caught as
  non-finite rather than read as zeros.
- Root attributes: the key (JSON), layers, poolings, dim, storage dtype, chunk rows,
  toolkit version (of the writer that built the file), the manifest digest and
  ``ids_digest``, a BLAKE2b digest of ``/ids`` (written once: ids never change in place).

The row index. ``/slot``, ``/failure_reason`` and ``/audio_fingerprint`` carry
Fletcher-32 checksums per chunk like the features, and ``/ids`` its digest, so a
flipped bit in the index is an error, never another row's features: every opener
checks the index first (:func:`read_index`). Files built before these existed
still open, with the structural checks only; any rebuild adds both.

Keys. The cache treats a key as an opaque flat dict that must match to reuse a
file, with one rule for keys written by ssl-ser 0.1.0: they held the field
``toolkit_version`` where keys now hold ``feature_version`` (the version of what
the extractor computes, see :mod:`ssl_ser.extract.config`), and every extractor
of that release was at feature version 1. So comparisons read a key with
``toolkit_version`` and no ``feature_version`` as feature version 1 and ignore the
toolkit version; the stored key itself is never rewritten.

Crash safety rests on one rule: while a writer is live, it changes only raw bytes
of datasets whose storage was allocated when the file was built (early allocation)
and, in place, the fixed-size manifest-digest attribute. Allocation is real, not
sparse: the build writes every chunk (fill values), so the disk space is taken when
the file is built and a full disk stops the build (the old file stays as it was),
never a later commit. A writer also reserves the blocks of a file built sparse by an
older release (``posix_fallocate``) before it writes into it. HDF5 metadata is never
rewritten in place, so a writer killed at any moment leaves a file that opens.
Anything that changes the structure (new rows) builds a complete new file beside
the old one and atomically renames it over the old one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

import ssl_ser
from ssl_ser.errors import CacheError, CacheKeyMismatchError, ConfigError, UnknownChoiceError
from ssl_ser.fingerprint import DIGEST_CHARS, Fingerprint

FORMAT = "ssl-ser-cache"
FORMAT_VERSION = 1
SUFFIX = ".h5"
STORAGE_DTYPES: tuple[str, ...] = ("float16", "float32")
# What extraction accepts: a storage dtype, or "auto" (float16 for neural models).
STORAGE_DTYPE_CHOICES: tuple[str, ...] = ("auto", *STORAGE_DTYPES)
# Chosen by benchmarks/cache_bench.py: 256 rows x 1 layer x 1,024 float16 = 512 KiB chunks.
DEFAULT_CHUNK_ROWS = 256
# Failure reasons longer than this (in UTF-8 bytes) are cut.
REASON_BYTES = 512
DIGEST_BYTES = 128
# Rows per chunk of the index datasets (slot, failure reason, fingerprint).
INDEX_CHUNK_ROWS = 4096
MISSING = -1
FAILED = -2
# Superblock v0 and v1 object headers: a killed writer leaves no "file is open"
# flag that newer superblocks (libver >= v110) refuse to reopen without h5clear.
LIBVER = ("earliest", "v108")

# Keys of ssl-ser 0.1.0 held the toolkit version; they are read as feature version 1.
LEGACY_VERSION_FIELD = "toolkit_version"
FEATURE_VERSION_FIELD = "feature_version"
LEGACY_FEATURE_VERSION = 1

IDS = "ids"
SLOT = "slot"
REASON = "failure_reason"
FEATURES = "features"
FINGERPRINT = "audio_fingerprint"
IDS_DIGEST = "ids_digest"
# The per-row datasets that carry a checksum per chunk (with the features).
INDEX = (SLOT, REASON, FINGERPRINT)
# An index chunk failing its checksum is read again (a writer may be rewriting it)
# before it counts as damaged: this many reads in all, waiting 0.05 s, 0.1 s, ...
INDEX_READ_ATTEMPTS = 4
INDEX_READ_WAIT_S = 0.05
FINGERPRINT_DTYPE = np.dtype(
    [
        ("size", "<i8"),
        ("mtime_ns", "<i8"),
        ("blake2b", f"S{DIGEST_CHARS}"),
        ("path", f"S{DIGEST_CHARS}"),
    ]
)

KeyValue = str | int | float | bool


def cache_path(cache_dir: str | Path, slug: str, corpus: str, condition: str) -> Path:
    """Where the cache of one (extractor, corpus, condition) lives: ``DIR/slug/corpus/cond.h5``.

    Raises:
        ConfigError: a part that cannot name a folder, or a ',' anywhere in the path
            (``--cache`` lists are comma-separated).
    """
    parts = {"extractor slug": slug, "corpus": corpus, "condition": condition}
    for what, value in parts.items():
        if not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ConfigError(f"{what} {value!r} cannot name a cache folder or file")
    for what, value in {"cache folder": str(cache_dir), **parts}.items():
        if "," in value:
            raise ConfigError(
                f"{what} {value!r} holds ','; `ser classify --cache` takes a comma-separated "
                "list, so a cache under it could not be named there: choose a name without ','"
            )
    return Path(cache_dir) / slug / corpus / f"{condition}{SUFFIX}"


def list_caches(cache_dir: str | Path) -> list[Path]:
    """Every ``*.h5`` file under `cache_dir`, sorted by path."""
    root = Path(cache_dir)
    if not root.is_dir():
        raise CacheError(f"cache folder {root} does not exist")
    return sorted(path for path in root.rglob(f"*{SUFFIX}") if path.is_file())


def normalize_key(key: Mapping[str, Any]) -> dict[str, KeyValue]:
    """Check that a key is a flat dict of str/int/float/bool and return a plain copy.

    Raises:
        ConfigError: a field name is not a non-empty string, or a value is nested,
            None or a non-finite float.
    """
    if not isinstance(key, Mapping):
        raise ConfigError(f"cache key must be a dict of field -> value, got {type(key).__name__}")
    out: dict[str, KeyValue] = {}
    for field, value in key.items():
        if not isinstance(field, str) or not field:
            raise ConfigError(f"cache key field {field!r} must be a non-empty string")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(
                f"cache key field {field!r} has value {value!r} of type {type(value).__name__}; "
                "expected str, int, float or bool (encode nested values as JSON strings)"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"cache key field {field!r} has non-finite value {value!r}")
        out[field] = value
    return out


def comparable_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """The key as compared: a legacy key's toolkit version read as feature version 1.

    >>> comparable_key({"model": "m", "toolkit_version": "0.1.0"})
    {'model': 'm', 'feature_version': 1}
    """
    out = {field: value for field, value in key.items() if field != LEGACY_VERSION_FIELD}
    if LEGACY_VERSION_FIELD in key:
        out.setdefault(FEATURE_VERSION_FIELD, LEGACY_FEATURE_VERSION)
    return out


def key_differences(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """One line per field whose value differs (by JSON text, so 1, 1.0 and True differ).

    Both keys are compared through :func:`comparable_key`.
    """
    stored, requested = comparable_key(stored), comparable_key(requested)
    lines = []
    for field in sorted(set(stored) | set(requested)):
        old = _show(stored, field)
        new = _show(requested, field)
        if old != new:
            lines.append(f"{field}: stored {old}, requested {new}")
    return lines


def _show(values: Mapping[str, Any], field: str) -> str:
    return json.dumps(values[field]) if field in values else "(absent)"


def check_key(path: Path, differences: Sequence[str]) -> None:
    """Raise CacheKeyMismatchError listing `differences` (from key_differences), if any."""
    if differences:
        raise CacheKeyMismatchError(
            f"cache {path} was built with a different key; differing fields:\n  "
            + "\n  ".join(differences)
            + "\nUse another cache folder, or delete the file to rebuild it with this key."
        )


def contiguous_runs(sorted_values: np.ndarray, max_gap: int = 1) -> list[tuple[int, int]]:
    """Split sorted integers into runs [start, stop) of positions whose steps are <= max_gap.

    >>> contiguous_runs(np.array([3, 4, 5, 9, 10]))
    [(0, 3), (3, 5)]
    """
    if len(sorted_values) == 0:
        return []
    steps = np.diff(sorted_values)
    breaks = (np.flatnonzero((steps > max_gap) | (steps < 0)) + 1).tolist()
    edges = [0, *breaks, len(sorted_values)]
    return list(zip(edges[:-1], edges[1:], strict=True))


@dataclass
class Header:
    """The attributes that describe a cache file (everything but the rows), checked when made."""

    key: dict[str, KeyValue]
    layers: list[str]
    dim: int
    poolings: list[str]
    storage_dtype: str
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    manifest_digest: str = ""
    # the ssl-ser that built the file: this one for a new file
    toolkit_version: str = dataclass_field(default_factory=lambda: ssl_ser.__version__)

    def __post_init__(self) -> None:
        self.key = normalize_key(self.key)
        self.layers = _check_names("layer", self.layers)
        self.poolings = _check_names("pooling", self.poolings)
        self.dim = positive_int("feature dim", self.dim)
        if self.storage_dtype not in STORAGE_DTYPES:
            raise UnknownChoiceError("storage dtype", self.storage_dtype, STORAGE_DTYPES)
        self.chunk_rows = positive_int("chunk_rows", self.chunk_rows)
        self.manifest_digest = check_digest(self.manifest_digest)

    def differences(self, requested: Header) -> list[str]:
        """Key fields, then layout fields (layers, dim...), that differ from `requested`."""
        layout = key_differences(self.structure(), requested.structure())
        return key_differences(self.key, requested.key) + [f"file layout {line}" for line in layout]

    def structure(self) -> dict[str, Any]:
        """The fields besides the key that two writers of one file must agree on."""
        return {
            "layers": self.layers,
            "dim": self.dim,
            "poolings": self.poolings,
            "storage_dtype": self.storage_dtype,
        }

    def write(self, file: h5py.File) -> None:
        """Store the header as root attributes of `file`."""
        attrs = file.attrs
        attrs["format"] = FORMAT
        attrs["format_version"] = FORMAT_VERSION
        attrs["key"] = json.dumps(self.key, sort_keys=True)
        attrs["layers"] = json.dumps(self.layers)
        attrs["poolings"] = json.dumps(self.poolings)
        attrs["dim"] = self.dim
        attrs["storage_dtype"] = self.storage_dtype
        attrs["chunk_rows"] = self.chunk_rows
        attrs["toolkit_version"] = self.toolkit_version
        attrs.create("manifest_digest", _digest_bytes(self.manifest_digest), dtype=_DIGEST_TYPE)

    @classmethod
    def read(cls, file: h5py.File, path: Path) -> Header:
        """The header stored in `file` (opened from `path`, named in errors)."""
        attrs = file.attrs
        if attrs.get("format") != FORMAT:
            raise CacheError(f"{path} is not an ssl-ser feature cache (no format={FORMAT!r})")
        version = int(attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise CacheError(
                f"{path} has cache format version {version}; this toolkit reads "
                f"version {FORMAT_VERSION}. Rebuild it with `ser extract`."
            )
        try:
            return cls(
                key=json.loads(attrs["key"]),
                layers=json.loads(attrs["layers"]),
                dim=int(attrs["dim"]),
                poolings=json.loads(attrs["poolings"]),
                storage_dtype=str(attrs["storage_dtype"]),
                chunk_rows=int(attrs["chunk_rows"]),
                manifest_digest=read_digest(file),
                toolkit_version=str(attrs["toolkit_version"]),
            )
        except (KeyError, ValueError, ConfigError) as error:
            raise CacheError(f"{path} has a damaged header: {error}") from error


_DIGEST_TYPE = h5py.string_dtype("ascii", DIGEST_BYTES)


def check_digest(digest: str) -> str:
    """A manifest digest: an ASCII string of at most DIGEST_BYTES characters."""
    if not isinstance(digest, str) or not digest.isascii() or len(digest) > DIGEST_BYTES:
        raise ConfigError(
            f"manifest digest {digest!r} must be an ASCII string of at most {DIGEST_BYTES} chars"
        )
    return digest


def _digest_bytes(digest: str) -> np.bytes_:
    return np.bytes_(digest.encode("ascii").ljust(DIGEST_BYTES, b"\0"))


def read_digest(file: h5py.File) -> str:
    """The manifest digest attribute of an open cache file."""
    raw = file.attrs.get("manifest_digest", b"")
    return bytes(raw).rstrip(b"\0").decode("ascii", errors="replace")


def write_digest(file: h5py.File, digest: str) -> None:
    """Overwrite the fixed-size digest attribute in place (only its own bytes change)."""
    file.attrs.modify("manifest_digest", _digest_bytes(check_digest(digest)))


def fingerprint_records(fingerprints: Sequence[Fingerprint | None]) -> np.ndarray:
    """Fingerprints as a FINGERPRINT_DTYPE array (None: the empty record, no fingerprint)."""
    out = np.zeros(len(fingerprints), dtype=FINGERPRINT_DTYPE)
    for i, fingerprint in enumerate(fingerprints):
        if fingerprint is not None:
            out[i] = (
                fingerprint.size,
                fingerprint.mtime_ns,
                fingerprint.blake2b.encode("ascii"),
                fingerprint.path.encode("ascii"),
            )
    return out


def as_fingerprint_records(records: np.ndarray) -> np.ndarray:
    """Stored fingerprint records as FINGERPRINT_DTYPE (older files lack the ``path`` field)."""
    if records.dtype == FINGERPRINT_DTYPE:
        return records
    out = np.zeros(len(records), dtype=FINGERPRINT_DTYPE)
    for name in records.dtype.names or ():
        if name in (FINGERPRINT_DTYPE.names or ()):
            out[name] = records[name]
    return out


def has_path_fingerprints(file: h5py.File) -> bool:
    """Whether an open cache records fingerprints with the audio's path (newer files)."""
    return FINGERPRINT in file and "path" in (file[FINGERPRINT].dtype.names or ())


def fingerprint_of(record: np.void) -> Fingerprint | None:
    """One stored record as a Fingerprint, or None where no fingerprint was recorded."""
    digest = bytes(record["blake2b"]).rstrip(b"\0").decode("ascii", errors="replace")
    if not digest:
        return None
    path = bytes(record["path"]).rstrip(b"\0").decode("ascii", errors="replace")
    return Fingerprint(int(record["size"]), int(record["mtime_ns"]), digest, path)


def positive_int(what: str, value: Any) -> int:
    """`value` as an int, refused (naming `what`) unless it is a whole number above 0."""
    if isinstance(value, bool) or int(value) != value or value <= 0:
        raise ConfigError(f"{what} {value!r} must be a positive integer")
    return int(value)


def _check_names(what: str, names: Iterable[Any]) -> list[str]:
    if isinstance(names, str):
        raise ConfigError(f"{what}s must be a list of names, got the string {names!r}")
    out = [str(name) for name in names]
    if not out or len(set(out)) != len(out) or "" in out:
        raise ConfigError(f"{what}s {out!r} must be a non-empty list of unique, non-empty names")
    return out


def early_dcpl(
    chunks: tuple[int, ...], fill: Any = None, checksum: bool = False
) -> h5py.h5p.PropDCID:
    """Dataset creation properties with all chunks allocated and written when the dataset is made.

    The chunks hold the fill value (zeros if None) from the start: see the module
    docstring's crash-safety rule. With `checksum`, each carries a Fletcher-32 checksum.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    if checksum:
        dcpl.set_fletcher32()
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    if fill is not None:
        dcpl.set_fill_value(np.asarray(fill))
    return dcpl


def encode_reason(reason: str) -> bytes:
    """A failure reason as UTF-8 cut to REASON_BYTES without splitting a character."""
    data = str(reason).encode("utf-8")
    if len(data) <= REASON_BYTES:
        return data
    return data[: REASON_BYTES - 3].decode("utf-8", errors="ignore").encode("utf-8") + b"..."


def build(
    target: Path,
    header: Header,
    ids: Sequence[str],
    source: h5py.File | None = None,
    progress: bool = False,
    rows: np.ndarray | None = None,
    cache: Path | None = None,
) -> None:
    """Write a complete cache file at `target` holding `ids`, copying rows from `source`.

    `rows` gives, for each of `ids`, the row of `source` it copies (its state,
    failure reason and features), or -1 for a row that starts missing. By default
    `ids` must start with the ids of `source` in its order, and those rows are
    copied. Copied rows keep their slots when the new file has room for them, and
    are packed in slot order otherwise (a file that lost rows). A file that cannot be
    built (a full disk) is removed and the error is a CacheError naming `cache`
    (the file `target` is to replace; default `target` itself).

    The disk space the file needs (:func:`needed_bytes`) is reserved first
    (:func:`check_space`): HDF5 cannot undo a write that failed half-way (the file
    then cannot be closed, and the process may crash on exit), so a full disk, a
    quota or a file-size limit is met before HDF5 writes anything.
    """
    if source is not None and rows is None:
        rows = np.arange(len(ids), dtype=np.int64)
        rows[len(source[IDS]) :] = -1
    needed = needed_bytes(header, ids)
    shown = Path(target if cache is None else cache)
    action = "build" if cache is None else f"build (as {Path(target).name}) a new copy of"
    try:
        check_space(Path(target), needed)
        _build(target, header, ids, source, progress, rows)
    except BaseException as error:
        Path(target).unlink(missing_ok=True)
        if isinstance(error, OSError | RuntimeError):
            raise storage_error(shown, error, action, needed) from error
        raise


def needed_bytes(header: Header, ids: Sequence[str]) -> int:
    """An upper bound of the bytes a cache file of `header` holding `ids` takes on disk.

    Chunks are allocated whole, each with its 4-byte checksum; ids take their
    UTF-8 bytes plus their heap records; HDF5's metadata (object headers, chunk
    B-trees) is bounded by 64 KiB plus 128 bytes per chunk. Measured files were
    44-530 KiB under this bound (600 to 20,000 rows, 1 to 25 layers).
    """
    capacity = max(len(ids), 1)
    rows_per_chunk = min(capacity, header.chunk_rows)
    feature_chunks = (
        len(header.poolings) * len(header.layers) * math.ceil(capacity / rows_per_chunk)
    )
    chunk_bytes = rows_per_chunk * header.dim * np.dtype(header.storage_dtype).itemsize + 4
    index_rows = min(capacity, INDEX_CHUNK_ROWS)
    index_chunks = math.ceil(capacity / index_rows)
    row_bytes = np.dtype("i4").itemsize + REASON_BYTES + FINGERPRINT_DTYPE.itemsize
    index = index_chunks * (index_rows * row_bytes + 3 * 4)
    id_bytes = sum(len(str(utt_id).encode("utf-8")) + 48 for utt_id in ids)
    metadata = 65536 + 128 * (feature_chunks + len(INDEX) * index_chunks)
    return feature_chunks * chunk_bytes + index + id_bytes + metadata


def check_space(target: Path, needed: int) -> None:
    """Take `needed` bytes of disk for `target` (``posix_fallocate``), then give them back.

    Raises OSError (ENOSPC, EDQUOT, EFBIG) when the disk, a quota or the file-size
    limit cannot hold the file, before anything is built. The file is left empty;
    the build that follows truncates it. Where the file system cannot reserve,
    the free space is compared instead.
    """
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        reserved = reserve(fd, needed)
    finally:
        os.close(fd)
    os.truncate(target, 0)
    if not reserved and _short_of(target, needed):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))


def reserve(fd: int, size: int) -> bool:
    """``posix_fallocate`` the first `size` bytes; False where the system cannot reserve."""
    if not hasattr(os, "posix_fallocate"):
        return False
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV, errno.ENOSYS):
            return False
        raise
    return True


def _build(
    target: Path,
    header: Header,
    ids: Sequence[str],
    source: h5py.File | None,
    progress: bool,
    rows: np.ndarray | None,
) -> None:
    """:func:`build` without the clean-up of a half-built file."""
    n_rows = len(ids)
    capacity = max(n_rows, 1)
    with h5py.File(target, "w", libver=LIBVER, locking=False) as file:
        header.write(file)
        file.create_dataset(IDS, data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        file.attrs[IDS_DIGEST] = ids_digest(ids)
        row_chunk = (min(capacity, INDEX_CHUNK_ROWS),)
        missing = np.int32(MISSING)
        file.create_dataset(SLOT, (capacity,), "i4", dcpl=early_dcpl(row_chunk, missing, True))
        reason_dcpl = early_dcpl(row_chunk, checksum=True)
        file.create_dataset(REASON, (capacity,), f"S{REASON_BYTES}", dcpl=reason_dcpl)
        no_fingerprint = np.zeros((), dtype=FINGERPRINT_DTYPE)
        print_dcpl = early_dcpl(row_chunk, no_fingerprint, checksum=True)
        file.create_dataset(FINGERPRINT, (capacity,), FINGERPRINT_DTYPE, dcpl=print_dcpl)
        features = file.create_group(FEATURES)
        chunks = (1, min(capacity, header.chunk_rows), header.dim)
        nan = np.asarray(np.nan, dtype=header.storage_dtype)
        for pooling in header.poolings:
            features.create_dataset(
                pooling,
                (len(header.layers), capacity, header.dim),
                header.storage_dtype,
                dcpl=early_dcpl(chunks, nan, checksum=True),
            )
        if source is not None and rows is not None:
            _copy_rows(source, file, np.asarray(rows, dtype=np.int64), progress)
        file.flush()
    fsync_path(target)


def storage_error(
    path: Path, error: BaseException, action: str, needed: int | None = None
) -> CacheError:
    """A one-line CacheError for a failed write: names the file, says whether the disk is full.

    HDF5 reports failed writes as OSError or RuntimeError with the system error in
    its text (``errno = 28, error message = 'No space left on device'``), or, for a
    write that failed while metadata was flushed, without it: then the disk counts
    as full when less than `needed` bytes are free. `needed` is named in the message.
    """
    text = str(error)
    errno_value = getattr(error, "errno", None)
    full = errno_value in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or any(
        marker in text
        for marker in ("No space left", "File too large", "Disk quota", "errno = 28", "errno = 27")
    )
    if full or (needed is not None and _short_of(path, needed)):
        wanted = "" if needed is None else f"needs about {needed / 2**20:.2f} MiB, "
        limit = _file_size_limit()
        if limit is not None and needed is not None and limit < needed:
            wanted += f"files limited to {limit / 2**20:.2f} MiB by ulimit -f, "
        return CacheError(
            f"cannot {action} {path}: no space left on device ({wanted}{_free_space(path)}). "
            "Free some space or use another --cache-dir, then re-run: committed rows are kept."
        )
    return CacheError(
        f"cannot {action} {path}: {first_line(error)}. Check the disk and the folder's "
        "permissions, then re-run: committed rows are kept."
    )


def _short_of(path: Path, needed: int) -> bool:
    """Whether `path`'s folder has under `needed` bytes free, or a file-size limit is below it."""
    with contextlib.suppress(OSError):
        if shutil.disk_usage(Path(path).parent).free < needed:
            return True
    limit = _file_size_limit()
    return limit is not None and limit < needed


def _file_size_limit() -> int | None:
    """The process's file-size limit in bytes (``ulimit -f``), or None where there is none."""
    try:
        import resource
    except ImportError:  # not a POSIX system: no such limit
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else int(limit)


def _free_space(path: Path) -> str:
    """'N MiB free in FOLDER', or 'free space unknown' when the folder cannot be asked."""
    try:
        usage = shutil.disk_usage(Path(path).parent)
    except OSError:
        return "free space unknown"
    return f"{usage.free / 2**20:.1f} MiB free in {Path(path).parent}"


def _copy_rows(source: h5py.File, target: h5py.File, rows: np.ndarray, progress: bool) -> None:
    """Copy the states, failure reasons, fingerprints and features of source `rows`."""
    index = read_index(source, Path(source.filename), tolerant=True)  # untrusted rows: missing
    old_slots = index.slots
    states = np.full(len(rows), MISSING, dtype=np.int64)
    copied = rows >= 0
    states[copied] = old_slots[rows[copied]]
    for row in np.flatnonzero(states == FAILED):
        try:
            target[REASON][row] = source[REASON][rows[row]]
        except (OSError, RuntimeError):  # its reason's chunk fails its checksum: try it again
            states[row] = MISSING
    complete = np.flatnonzero(states >= 0)
    old_used = states[complete]
    capacity = target[SLOT].shape[0]
    if len(old_used) and old_used.max() >= capacity:  # pack the rows, in slot order
        packed = np.empty(len(old_used), dtype=np.int64)
        packed[np.argsort(old_used, kind="stable")] = np.arange(len(old_used))
        states[complete] = packed
    target[SLOT][: len(rows)] = states.astype(np.int32)
    if index.fingerprints is not None and copied.any():
        target[FINGERPRINT][np.flatnonzero(copied)] = index.fingerprints[rows[copied]]
    order = np.argsort(old_used, kind="stable")
    used, new_slots = old_used[order], states[complete][order]
    names = list(source[FEATURES])
    blocks = len(np.unique(used // source[FEATURES][names[0]].chunks[1]))
    bar = tqdm(total=blocks * len(names), desc="copy cache", unit="block", disable=not progress)
    with bar:
        for name in names:
            old, new = source[FEATURES][name], target[FEATURES][name]
            copy_features(old, new, used, new_slots, source.filename, bar)


def copy_features(
    old: h5py.Dataset, new: h5py.Dataset, used: np.ndarray, slots: np.ndarray, name: str, bar: tqdm
) -> None:
    """Copy the rows at sorted slots `used` of `old` to `slots` of `new`, chunk block by block.

    Rows are cast to `new`'s dtype; values the cast would turn into inf (float32
    beyond the float16 range) are refused with CacheError naming `name`.
    """
    chunk_rows = old.chunks[1]
    narrowing = np.dtype(new.dtype).itemsize < np.dtype(old.dtype).itemsize
    for block in np.unique(used // chunk_rows):
        start = int(block) * chunk_rows
        stop = min(start + chunk_rows, old.shape[1])
        within = np.flatnonzero((used >= start) & (used < stop))
        data = _read_block(old, start, stop, name)[:, used[within] - start]
        if narrowing:
            _check_cast(data, new.dtype, name)
        targets = slots[within]
        for first, last in contiguous_runs(targets):
            low, high = int(targets[first]), int(targets[last - 1]) + 1
            new[:, low:high] = data[:, first:last]
        bar.update()


def _read_block(dataset: h5py.Dataset, start: int, stop: int, name: str) -> np.ndarray:
    """Slots [start, stop) of every layer; a chunk that fails its checksum is a CacheError."""
    out = np.empty((dataset.shape[0], stop - start, dataset.shape[2]), dtype=dataset.dtype)
    for layer in range(dataset.shape[0]):
        try:
            out[layer] = dataset[layer, start:stop]
        except (OSError, RuntimeError) as error:
            raise CacheError(
                f"{name}: the chunk of layer {layer}, slots {start}-{stop - 1} of "
                f"{dataset.name} cannot be read ({error}); run `ser cache verify --repair "
                f"{name}` to mark its rows for re-extraction"
            ) from error
    return out


def _check_cast(data: np.ndarray, dtype: np.dtype, name: str) -> None:
    """Refuse to cast complete rows (a (layers, rows, dim) block) whose values overflow."""
    limit = float(np.finfo(dtype).max)
    if data.size and float(np.abs(data).max()) > limit:
        raise CacheError(
            f"cannot store the rows of {name} as {dtype}: some values exceed its range "
            f"(|x| up to {float(np.abs(data).max()):g} > {limit:g}); keep float32"
        )


def fsync_path(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder entry (after a rename) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fsync_path(path)


def open_h5(path: Path, mode: str = "r", **cache_options: Any) -> h5py.File:
    """Open a cache file; a missing or damaged file becomes a CacheError that says what to do.

    HDF5's own file locking is off: writers hold a lock file (see :mod:`.lock`), and
    readers may read while a writer appends, which the layout makes safe.
    """
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"no cache file at {path}")
    try:
        return h5py.File(path, mode, libver=LIBVER, locking=False, **cache_options)
    except OSError as error:
        raise CacheError(
            f"cannot open cache {path}: {error}. The file is damaged or not HDF5; "
            "delete it and re-run `ser extract` to rebuild it."
        ) from error


def read_header(path: Path) -> Header:
    """The header of the cache file at `path` (opened and closed again)."""
    with open_h5(path, "r") as file:
        return Header.read(file, path)


class HeaderFields:
    """Header fields as properties, for the classes that hold an open file's ``header``."""

    header: Header

    @property
    def key(self) -> dict[str, Any]:
        """The key the file was built with."""
        return dict(self.header.key)

    @property
    def layers(self) -> list[str]:
        """Layer names in storage order."""
        return list(self.header.layers)

    @property
    def poolings(self) -> list[str]:
        """Pooled statistics stored in the file."""
        return list(self.header.poolings)


# ------------------------------------------------------------------ the row index


def ids_digest(ids: Sequence[str]) -> str:
    """The hex BLAKE2b digest of the ids in order: a damaged ``/ids`` no longer matches it.

    The ids are joined by NUL, which an HDF5 string cannot hold.
    """
    data = "\0".join(map(str, ids)).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def first_line(error: BaseException) -> str:
    """The first line of an error's text (h5py's run over several), or its type if it has none."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def damaged_error(path: Path, error: BaseException) -> CacheError:
    """The one-line CacheError for an HDF5 structure h5py cannot read (an object header...)."""
    return CacheError(
        f"cannot read cache {path}: its HDF5 structure is damaged ({first_line(error)}). "
        "Delete it and re-run `ser extract` to rebuild it."
    )


@contextlib.contextmanager
def damage_as_error(path: Path) -> Iterator[None]:
    """Turn h5py's errors on a damaged file (KeyError, OSError...) into one CacheError naming it."""
    try:
        yield
    except CacheError:
        raise
    except (KeyError, OSError, RuntimeError) as error:
        raise damaged_error(path, error) from error


@dataclass
class Index:
    """The checked row index of an open cache (see :func:`read_index`).

    Attributes:
        ids: every row's utterance id, in file order.
        slots: int64 per row: MISSING, FAILED or the slot of its features.
        fingerprints: FINGERPRINT_DTYPE records per row, or None (a file built before them).
        untrusted: per row, whether its index entry could not be trusted (a chunk
            failing its checksum, a slot out of range or shared); such rows read as
            MISSING. Only a tolerant read returns any.
        problems: one line per kind of damage behind `untrusted`.
    """

    ids: list[str]
    slots: np.ndarray
    fingerprints: np.ndarray | None
    untrusted: np.ndarray
    problems: list[str]


def read_index(file: h5py.File, path: Path, tolerant: bool = False) -> Index:
    """The ids, slots and fingerprints of an open cache, checked as ``ser cache verify`` does.

    Cheap (one read of each index dataset): index chunks' checksums, the ids
    against their digest, unique non-empty ids, slots in range and not shared.
    With `tolerant`, rows whose index entry cannot be trusted are flagged and
    read as MISSING (for repair); otherwise they are a CacheError naming `path`
    and the fix. Damaged ids are always an error: they cannot be mended.
    """
    with damage_as_error(path):
        ids = list(file[IDS].asstr()[:])
        id_problems = _id_problems(file, ids)
        if id_problems:
            raise CacheError(
                f"{path}: {'; '.join(id_problems)}; the row ids cannot be mended. Delete the file "
                "and re-run `ser extract` to rebuild it."
            )
        _check_index_shapes(file, path, len(ids))
        slots, damaged = _read_checked(file[SLOT], len(ids))
        prints = None
        if FINGERPRINT in file:
            prints, damaged_prints = _read_checked(file[FINGERPRINT], len(ids))
            prints = as_fingerprint_records(prints)
            damaged |= damaged_prints
    slots = slots.astype(np.int64)
    problems = []
    if damaged.any():
        problems.append(
            f"{int(damaged.sum())} row(s) are in index chunk(s) (/{SLOT} or /{FINGERPRINT}) "
            "that fail their checksum"
        )
    slots[damaged] = MISSING
    bad_slots, slot_problems = _slot_problems(slots, file[SLOT].shape[0])
    untrusted = damaged | bad_slots
    problems += slot_problems
    if untrusted.any() and not tolerant:
        raise CacheError(
            f"{path}: the row index is damaged: {'; '.join(problems)}. Nothing was read from "
            f"it. Run `ser cache verify --repair {path}` to send those rows back to "
            "extraction, then `ser extract` to redo them."
        )
    slots[untrusted] = MISSING
    if tolerant:
        lost = _unreadable_reasons(file[REASON], slots)
        if lost.any():
            problems.append(
                f"{int(lost.sum())} failed row(s) are in /{REASON} chunk(s) that fail their "
                "checksum"
            )
            untrusted |= lost
            slots[lost] = MISSING
    return Index(ids, slots, prints, untrusted, problems)


def _unreadable_reasons(dataset: h5py.Dataset, slots: np.ndarray) -> np.ndarray:
    """Per row, whether it failed and its reason's chunk cannot be read (reads only those chunks).

    Only tolerant reads (a writer, ``verify``) look: readers never serve the reasons.
    """
    lost = np.zeros(len(slots), dtype=bool)
    failed = np.flatnonzero(slots == FAILED)
    step = dataset.chunks[0] if dataset.chunks else max(len(slots), 1)
    for block in np.unique(failed // step):
        start = int(block) * step
        stop = min(start + step, dataset.shape[0])
        try:
            dataset[start:stop]
        except (OSError, RuntimeError):
            lost[failed[(failed >= start) & (failed < stop)]] = True
    return lost


def _id_problems(file: h5py.File, ids: list[str]) -> list[str]:
    """Damaged or invalid ids; ids that match their digest are as the writer checked them."""
    problems = []
    stored = file.attrs.get(IDS_DIGEST)
    if stored is not None:
        if str(stored) == ids_digest(ids):
            return []
        problems.append(f"/{IDS} does not match its digest (the row ids are damaged)")
    if len(set(ids)) != len(ids):
        repeated = [utt_id for utt_id, count in Counter(ids).items() if count > 1]
        problems.append(f"{len(repeated)} utterance id(s) repeat in /{IDS}, e.g. {repeated[0]!r}")
    if "" in ids:
        problems.append(f"an utterance id in /{IDS} is empty")
    return problems


def _check_index_shapes(file: h5py.File, path: Path, n_rows: int) -> None:
    capacity = max(n_rows, 1)
    for name in INDEX:
        if name in file and file[name].shape != (capacity,):
            raise CacheError(
                f"{path}: /{name} has shape {file[name].shape}; expected ({capacity},) for "
                f"{n_rows} id(s). Delete the file and re-run `ser extract` to rebuild it."
            )


def _read_checked(dataset: h5py.Dataset, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n_rows` values, and per row whether its chunk fails its checksum.

    Read whole; on failure read again after a short wait (a writer may be
    rewriting a chunk), then chunk by chunk: values of chunks that still fail are
    zeros, flagged damaged.
    """
    for attempt in range(1, INDEX_READ_ATTEMPTS):
        try:
            return dataset[:n_rows], np.zeros(n_rows, dtype=bool)
        except (OSError, RuntimeError):
            time.sleep(INDEX_READ_WAIT_S * attempt)
    values = np.zeros(n_rows, dtype=dataset.dtype)
    damaged = np.zeros(n_rows, dtype=bool)
    step = dataset.chunks[0] if dataset.chunks else max(n_rows, 1)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        try:
            values[start:stop] = dataset[start:stop]
        except (OSError, RuntimeError):
            damaged[start:stop] = True
    return values, damaged


def _slot_problems(slots: np.ndarray, capacity: int) -> tuple[np.ndarray, list[str]]:
    """Rows whose slot is out of range or shared with another row, and one line per kind."""
    invalid = (slots >= capacity) | ((slots < 0) & (slots != MISSING) & (slots != FAILED))
    problems = []
    if invalid.any():
        problems.append(
            f"{int(invalid.sum())} row(s) have an invalid slot, e.g. {int(slots[invalid][0])}"
        )
    used = np.where(invalid, MISSING, slots)
    values, counts = np.unique(used[used >= 0], return_counts=True)
    shared = np.isin(used, values[counts > 1])
    if shared.any():
        problems.append(f"{int(shared.sum())} complete row(s) share a slot with another row")
    return invalid | shared, problems
