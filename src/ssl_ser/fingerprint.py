"""Audio fingerprints: which bytes an utterance's features were computed from.

A fingerprint is the file's size, its modification time (ns), a BLAKE2b
digest (16 bytes, hex) of its whole content, and a digest of the file's absolute
path: the path the features were computed from. ``ser extract`` computes it where
the audio is read (in the DataLoader workers) and stores it beside the features
(see :mod:`ssl_ser.cache.layout`). The next ``ser extract`` stats each file
first: same path, size and modification time means the same audio (as make,
rsync and git assume); otherwise (a row whose path changed, e.g. two rows whose
paths were exchanged in the manifest) the file is hashed, and a different size or digest
means the audio changed, so its row is extracted again, while a file that was
only touched (same content) keeps its features and gets its new time (and path) recorded.
``ser extract --rehash`` hashes every file, the certain check: a file replaced in
place by other audio of the same size with the same modification time (``cp
-p``, ``touch -r``) passes the stat and is only caught by hashing.
``ser classify`` only stats (no hashing) and refuses a cache whose audio no
longer matches. Results cells are keyed by the digests, not the times, so a
cache rebuilt from the same audio reuses them and one from other audio does not.

Whole-file hashing rather than size+head+tail (``benchmarks/fingerprint_bench.py``,
warm page cache, a loaded 2-core machine): per 3.75 s 16 kHz mono file, hashing
takes 0.37 ms against 0.66 ms to decode it and about 4.4 ms for its whole MFCC
extraction (about 8 %); per 48 kHz stereo file, 1.8 ms against 10.8 ms to decode
and resample it. Head+tail saves 0.1-1.4 ms of that but misses edits in the
middle of a file, and next to a model's forward pass (in parallel with it, in
the workers) the whole-file digest costs nothing measurable.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

DIGEST_BYTES = 16
# Hex characters of a digest (what the cache stores).
DIGEST_CHARS = 2 * DIGEST_BYTES


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one audio file's content: size, modification time and digest.

    Attributes:
        size: bytes.
        mtime_ns: modification time in nanoseconds.
        blake2b: hex BLAKE2b digest of the whole file (DIGEST_CHARS characters).
        path: hex digest of the file's absolute path (:func:`path_digest`); empty
            where it was not recorded (caches built before paths were).
    """

    size: int
    mtime_ns: int
    blake2b: str
    path: str = ""

    def same_path(self, path: str | Path) -> bool:
        """Whether the fingerprint was taken of the file at `path` (False when unrecorded)."""
        return bool(self.path) and self.path == path_digest(path)

    def same_stat(self, stat: tuple[int, int]) -> bool:
        """Whether a file's current (size, mtime_ns) is the one recorded."""
        return (self.size, self.mtime_ns) == tuple(stat)

    def same_content(self, other: Fingerprint) -> bool:
        """Whether two fingerprints are of the same bytes (size and digest; time ignored)."""
        return (self.size, self.blake2b) == (other.size, other.blake2b)


def path_digest(path: str | Path) -> str:
    """The hex BLAKE2b digest (DIGEST_CHARS characters) of a file's absolute path.

    Binds a row to the file its features came from: a row whose manifest path
    changed is hashed again, whatever the new file's size and time.
    """
    absolute = os.path.abspath(os.fspath(path)).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(absolute, digest_size=DIGEST_BYTES).hexdigest()


def not_regular_reason(path: str | Path) -> str | None:
    """Why `path` is not a regular file (a FIFO, socket, device, folder, broken link), or None.

    Opening a FIFO blocks until something writes to it, so audio is checked with
    this before it is opened. A path that does not exist gives None: opening it
    says so.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"broken symbolic link (to {os.readlink(path)})"
        return None
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a device",
        stat.S_ISBLK: "a device",
        stat.S_ISDIR: "a folder",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "a special file")
    return f"not a regular audio file ({kind})"


def check_regular(path: str | Path) -> None:
    """Refuse a path that exists but is not a regular file (see :func:`not_regular_reason`).

    Raises:
        OSError: naming the path and what it is.
    """
    reason = not_regular_reason(path)
    if reason is not None:
        raise OSError(f"{path}: {reason}")


def stat_of(path: str | Path) -> tuple[int, int]:
    """(size, mtime_ns) of a file: the cheap check, no reading.

    Raises:
        OSError: the file cannot be stat'ed (missing, no permission).
    """
    info = os.stat(path)
    return int(info.st_size), int(info.st_mtime_ns)


def content_digest(path: str | Path) -> str:
    """The hex BLAKE2b digest of a file's whole content.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=DIGEST_BYTES))
    return digest.hexdigest()


def of_file(path: str | Path) -> Fingerprint:
    """Fingerprint a file: stat, hash, and stat again to catch a file written meanwhile.

    Raises:
        OSError: the file cannot be read, is not a regular file (a FIFO would block),
            or it changed while it was hashed.
    """
    check_regular(path)
    before = stat_of(path)
    digest = content_digest(path)
    if stat_of(path) != before:
        raise OSError(f"{path} changed while it was being read; run again")
    return Fingerprint(before[0], before[1], digest, path_digest(path))
