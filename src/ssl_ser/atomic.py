"""The one way files reach an output folder: atomically, and never through a link.

Every table, report, figure and record the toolkit writes into an output folder
goes through :func:`write_file` (or :func:`write_text`): the content is written
to a new temporary file beside the target (created exclusively, so a planted
link at its name is not followed) and renamed over the target, so readers see
the old file or the new one, never half of one. A target, or a folder between
the output folder and the target, that is a symbolic link is refused with a
one-line :class:`~ssl_ser.errors.OutputError` and nothing is written: a link
planted in a shared output folder must not make the toolkit overwrite a file
elsewhere, and replacing the link silently would hide from its owner that the
folder is not what they set up. The output folder itself may be a link (the user
named it). Operating-system failures (read-only file system, disk full, no
permission) become the same one-line error naming the path; the temporary file
is removed and the old target kept.

Not guaranteed: durability across a power cut (no fsync), and protection from a
second process that swaps folders for links between the check and the rename.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from ssl_ser.errors import OutputError

TEMPORARY_SUFFIX = ".tmp"


def write_text(path: str | Path, text: str, *, root: str | Path | None = None) -> Path:
    """Write `text` (UTF-8) to `path` atomically; see :func:`write_file` for `root`."""
    return write_file(
        path, lambda temporary: temporary.write_text(text, encoding="utf-8"), root=root
    )


def write_file(
    path: str | Path, write: Callable[[Path], object], *, root: str | Path | None = None
) -> Path:
    """Call ``write(temporary)`` and rename the temporary file over `path`.

    Args:
        path: the file to write.
        write: writes the whole content to the path it is given (a temporary file
            beside `path`, whose name ends in ``.tmp``: give writers that infer the
            format from the suffix the format explicitly).
        root: the output folder; folders between it and `path` are made if
            missing and must not be links (default: `path`'s own folder).

    Raises:
        OutputError: `path` or a folder under `root` is a symbolic link, or the
            operating system refused the write (the message names the path).
    """
    path = Path(path)
    make_folder(path.parent, root=root)
    refuse_link(path)
    temporary = _new_temporary(path)
    try:
        write(temporary)
        refuse_link(path)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {_reason(error)}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def make_folder(folder: str | Path, *, root: str | Path | None = None) -> Path:
    """Make `folder` (and its parents) unless it exists; no folder below `root` may be a link.

    Raises:
        OutputError: a folder below `root` is a symbolic link, a path on the way
            is a file, or the operating system refused to make a folder.
    """
    folder = Path(folder)
    base = Path(root) if root is not None else folder
    try:
        below = folder.relative_to(base).parts
    except ValueError:
        base, below = folder, ()
    try:
        base.mkdir(parents=True, exist_ok=True)
        current = base
        for part in below:
            current = current / part
            refuse_link(current)
            current.mkdir(exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot make folder {folder}: {_reason(error)}") from error
    return folder


def refuse_link(path: Path) -> None:
    """Raise unless `path` is missing or not a symbolic link.

    Raises:
        OutputError: naming the link and where it points.
    """
    if path.is_symlink():
        raise OutputError(
            f"refusing to write {path}: it is a symbolic link (to {os.readlink(path)}); "
            "remove the link or choose another output folder"
        )


def check_writable(folder: str | Path, option: str = "--output") -> Path:
    """Make `folder` and prove a file can be created in it, before any long work starts.

    Raises:
        OutputError: naming the option, the folder and the reason (read-only file
            system, a file on the path, no permission, disk full).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _new_temporary(folder / ".write-check")
        probe.unlink()
    except (OSError, OutputError) as error:
        cause = error.__cause__ if isinstance(error, OutputError) else error
        reason = _reason(cause) if isinstance(cause, OSError) else str(error)
        raise OutputError(f"cannot write into {option} {folder}: {reason}") from error
    return folder


def _new_temporary(path: Path) -> Path:
    """A new, empty file beside `path` (exclusive create: an existing name or link fails)."""
    temporary = path.with_name(
        f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(temporary, flags, 0o666))
    except OSError as error:
        raise OutputError(f"cannot write {path}: {_reason(error)}") from error
    return temporary


def _reason(error: OSError) -> str:
    """The operating system's words for `error` (``No space left on device``...)."""
    if error.strerror:
        return error.strerror
    if error.errno is not None:
        return os.strerror(error.errno)
    return str(error).splitlines()[0] if str(error) else type(error).__name__
