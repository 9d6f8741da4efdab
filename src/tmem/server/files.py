"""The files the daemon reads and writes for its admin: save files and
the state file.

Rules:
- Only regular files are read or replaced.  A FIFO would block the
  daemon's one thread until someone wrote to it, and a device node or a
  directory is not a save file: both are refused by name, never opened
  for writing.
- A file is written whole or not at all: into a private temporary file
  beside it (mode 0600: tenants' pages are in it), flushed to disk, then
  renamed into place.  A write that fails (a full disk) leaves the old
  file as it was.
- Without `replace`, an existing file is never touched, even if it
  appears while the new one is being written.
- Every failure is one InvalidArgument naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from tmem.engine.errors import InvalidArgument

T = TypeVar("T")


@contextlib.contextmanager
def reading(path: Path) -> Iterator[BinaryIO]:
    """Open a regular file for reading (never blocks on a FIFO)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise _cannot("read", path, error) from None
    with os.fdopen(descriptor, "rb") as f:
        kind = _kind(os.fstat(descriptor).st_mode)
        if kind:
            raise InvalidArgument(f"cannot read {str(path)!r}: it is "
                                  f"{kind}, not a regular file")
        os.set_blocking(descriptor, True)
        yield f


def write_atomically(path: Path, replace: bool,
                     write: Callable[[BinaryIO], T]) -> T:
    """Write a new file at `path` with `write(f)`, atomically; return
    what `write` returned.

    Raises:
        InvalidArgument: `path` exists and `replace` is False, is not a
            regular file, or cannot be written (the reason is given).
    """
    _check_target(path, replace)
    try:
        descriptor, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _cannot("write", path, error) from None
    try:
        with os.fdopen(descriptor, "wb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        _place(tmp, path, replace)
        return result
    except OSError as error:
        raise _cannot("write", path, error) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def check_writable(path: Path) -> None:
    """Refuse, now, a path that `write_atomically` could not replace."""
    _check_target(path, replace=True)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InvalidArgument(
            f"cannot write {str(path)!r}: its folder is not writable")


def _check_target(path: Path, replace: bool) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise InvalidArgument(f"cannot write {str(path)!r}: its "
                                  "folder does not exist") from None
        return
    except OSError as error:
        raise _cannot("write", path, error) from None
    kind = _kind(mode)
    if kind:
        raise InvalidArgument(f"cannot write {str(path)!r}: it is {kind}, "
                              "not a regular file")
    if not replace:
        raise _exists(path)


def _place(tmp: str, path: Path, replace: bool) -> None:
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails, unlike a rename, if path exists
    except FileExistsError:
        raise _exists(path) from None


def _kind(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular one."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket or other special file"


def _exists(path: Path) -> InvalidArgument:
    return InvalidArgument(f"{str(path)!r} exists; pass --force to "
                           "replace it")


def _cannot(verb: str, path: Path, error: OSError) -> InvalidArgument:
    return InvalidArgument(f"cannot {verb} {str(path)!r}: "
                           f"{error.strerror or error}")
