"""Prepared audio of a fine-tune run on disk, read back per batch instead of held in memory.

Each utterance is decoded, resampled, put through its condition and the
model's preprocessor once (as before); its segments' arrays are then appended
to one flat file and only an index (offset, dtype, shape, frames, seconds per
segment) stays in memory. A batch reads its utterances' bytes back with
``os.preadv`` into fresh arrays, so memory holds about one batch of audio
whatever the corpus size (in memory a 70-hour corpus needs 16 GB at 4 bytes a
sample). The bytes are those the preprocessor returned, so training sees
exactly the arrays it would have seen in memory.

The file lives in the run's output folder (not ``/tmp``, which is often
memory-backed), is named after the process, and is removed when the run ends;
files of processes that no longer exist (a killed run) are removed when the
next run starts.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_ser.extract.preprocess import Segment

STORE_DIR = ".audio"
FILE_PATTERN = re.compile(r"segments-(\d+)\.bin")

Key = tuple[str, str]


@dataclass(frozen=True)
class Stored:
    """Where one segment's array sits in the file, and what it is."""

    offset: int
    dtype: str
    shape: tuple[int, ...]
    frames: int
    seconds: float

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


class SegmentStore(Mapping[Key, list[Segment]]):
    """(utt_id, condition) -> segments, their arrays in a file of the run's output folder."""

    def __init__(self, output: Path):
        self.folder = Path(output) / STORE_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale(self.folder)
        self.path = self.folder / f"segments-{os.getpid()}.bin"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        self._index: dict[Key, list[Stored]] = {}
        self._end = 0

    def __setitem__(self, key: Key, segments: Sequence[Segment]) -> None:
        stored = []
        for segment in segments:
            values = np.ascontiguousarray(segment.values)
            os.pwrite(self._fd, memoryview(values).cast("B"), self._end)
            stored.append(
                Stored(self._end, values.dtype.str, values.shape, segment.frames, segment.seconds)
            )
            self._end += values.nbytes
        self._index[key] = stored

    def __getitem__(self, key: Key) -> list[Segment]:
        return [self._read(item) for item in self._index[key]]

    def _read(self, item: Stored) -> Segment:
        values = np.empty(item.shape, dtype=np.dtype(item.dtype))
        read = os.preadv(self._fd, [memoryview(values).cast("B")], item.offset)
        if read != item.nbytes:
            raise OSError(f"{self.path}: read {read} of {item.nbytes} bytes at {item.offset}")
        return Segment(values, item.frames, item.seconds)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def segment_seconds(self, key: Key) -> list[float]:
        """Audio seconds of each segment of `key` (for batch planning; nothing read from disk)."""
        return [item.seconds for item in self._index[key]]

    @property
    def nbytes(self) -> int:
        """Bytes of all stored arrays (the file's size)."""
        return self._end

    def close(self) -> None:
        """Close and remove the file (and the folder when no other run uses it)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()


def remove_stale(folder: Path) -> None:
    """Remove store files of processes that no longer run (a run killed before cleaning up)."""
    for path in folder.iterdir():
        match = FILE_PATTERN.fullmatch(path.name)
        if match and not _running(int(match.group(1))):
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
