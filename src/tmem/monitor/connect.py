"""Where the monitor meets the daemon: one function, one seam.

Every monitor command gets its snapshots and sends its actions through
the `ControlAPI` that `connect_control` returns, so joining the monitor
to the daemon is this one function and nothing else.

Rules:
- The returned object's `snapshot()` raises ConnectionLost while the
  daemon is unreachable and works again once it answers; callers retry
  on their own schedule.
- Actions raise PermissionDenied when the connection is not an admin's
  and NoSuchClient for an unknown client, as the engine does.
"""

from __future__ import annotations

from pathlib import Path

from tmem.client import sync
from tmem.engine.api import ControlAPI
from tmem.engine.errors import InvalidArgument

ADDRESS_VARIABLE = "TMEM_ADDRESS"
"""The environment variable holding the daemon's address by default."""


def connect_control(address: str | None,
                    token_file: Path | None = None) -> ControlAPI:
    """Open an admin control connection to a tmem daemon, lazily.

    Args:
        address: where the daemon listens, as given by --connect or
            $TMEM_ADDRESS; None for the daemon's default address.
        token_file: a file holding the admin token (needed over TCP).

    Returns:
        A ControlAPI whose `snapshot()` serves as the monitor's source.
        It dials on first use and again after the daemon went away, so
        ConnectionLost comes from its calls, never from here: `tmem top`
        started while the daemon is down shows "disconnected" and retries.
    """
    token = None
    if token_file is not None:
        try:
            token = token_file.read_bytes().strip()
        except OSError as error:
            raise InvalidArgument(f"token file {str(token_file)!r} cannot "
                                  f"be read: {error.strerror}") from None
    return sync.connect_control(address, token=token, lazy=True)
