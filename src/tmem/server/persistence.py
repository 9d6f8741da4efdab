"""Persistent pools across daemon restarts, and save/restore on request.

With `--state FILE`, a clean shutdown writes every tenant session (its
client's settings, pools and persistent pages, and its resume token) to
FILE, and the next start reads it back: each session waits, detached, for
its client to resume it with the token it already holds, and finds its
pools under the same ids.  Ephemeral pages are not kept.

Rules:
- The file is written beside FILE (mode 0600: it holds tenants' pages),
  flushed to disk and renamed over FILE (see files.py), so a crash while
  saving leaves the previous state, never half a state.
- Once loaded, FILE is removed: the pages live in memory again, and a
  crash must not bring back pages that clients have since replaced or
  flushed.  A crash (SIGKILL, power loss) loses everything since the last
  clean shutdown, as it does for zram.
- A state file that fails its checks stops the start with the reason; it
  is never applied in part, and never deleted by us.
- Where FILE cannot be written is found at start (`check_state_path`),
  not at shutdown when it is too late.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO

from tmem.engine import state
from tmem.engine.errors import InvalidArgument, StreamError
from tmem.engine.handles import format_size
from tmem.server import files
from tmem.server.sessions import SessionTable, adopt_restored

log = logging.getLogger("tmem.daemon")


def check_state_path(path: Path) -> None:
    """Refuse a state path that could not be written at shutdown."""
    try:
        files.check_writable(path)
    except InvalidArgument as error:
        raise InvalidArgument(f"state file: {error}") from None


def save_state(table: SessionTable, path: Path) -> None:
    """Write every tenant session to `path` atomically."""
    sessions = [s for s in table.sessions() if s.client is not None]

    def write(f: BinaryIO) -> state.StreamWriter:
        writer = state.StreamWriter(f.write)
        with table.host.lock:
            for session in sessions:
                assert session.client is not None
                state.write_client(writer, session.client,
                                   token=session.token)
            writer.end()
        return writer

    writer = files.write_atomically(path, True, write)
    log.info("saved to %s: sessions %d, persistent pages %d (%s)", path,
             writer.clients, writer.pages, format_size(writer.page_bytes))


def load_state(table: SessionTable, path: Path) -> None:
    """Restore the sessions saved in `path` (if it exists), detached."""
    if not path.exists():
        log.info("no state file at %s yet: starting empty", path)
        return
    try:
        with files.reading(path) as f:
            images = state.read_stream(f.read)
    except StreamError as error:
        raise StreamError(f"state file {str(path)!r}: {error}") from None
    except InvalidArgument as error:
        raise InvalidArgument(f"state file: {error}") from None
    with table.host.lock:
        clients = state.apply(table.host, images)
    adopt_restored(table, images, clients)
    path.unlink()
    pages = sum(c.persistent_pages for c in clients)
    log.info("restored from %s: sessions %d, persistent pages %d (file "
             "removed: the pages are in memory again); each waits for its "
             "program to resume it", path, len(clients), pages)
