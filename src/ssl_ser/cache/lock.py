"""One writer per cache file: an ``flock`` on a lock file beside it, holding the owner's pid.

The kernel releases an ``flock`` when its process dies, so a writer killed with
SIGKILL never blocks the next one; the stale lock file is simply locked again.
An ``flock`` also lives on in forked children that inherited its descriptor
(DataLoader workers, for example), so children close their copies right after
the fork: only the process that took the lock holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import weakref
from pathlib import Path

from ssl_ser.errors import CacheLockedError

logger = logging.getLogger(__name__)

# Locks held by this process, so that a forked child can let go of its inherited copies.
_HELD: weakref.WeakSet[WriterLock] = weakref.WeakSet()


class WriterLock:
    """An exclusive, non-blocking lock on a cache file, released on close or process death."""

    def __init__(self, cache_file: str | Path):
        self.cache_file = Path(cache_file)
        self.path = self.cache_file.with_name(self.cache_file.name + ".lock")  # clean.h5.lock
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock or raise CacheLockedError naming the owner's pid.

        The lock file is removed on release; if another process removed and
        recreated it between our open and our lock, we retry on the new file.

        Raises:
            CacheLockedError: another process holds the lock.
            OSError: the lock file cannot be made (a read-only folder: EACCES,
                EPERM or EROFS; the writer then opens a complete cache read-only).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise CacheLockedError(
                    f"cache {self.cache_file} is being written by another process "
                    f"(pid {owner}, lock file {self.path}); wait for it to finish or stop it"
                ) from None
            if _same_file(fd, self.path):
                self._fd = fd
            else:
                os.close(fd)
        # the pid is only for messages; a full disk may refuse it
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        _HELD.add(self)
        logger.debug("locked %s", self.path)
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None
        _HELD.discard(self)
        logger.debug("unlocked %s", self.path)

    def _forget(self) -> None:
        """Close an inherited descriptor without touching the lock file (in a forked child)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _drop_inherited_locks() -> None:
    for lock in list(_HELD):
        lock._forget()
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


def _read_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)
