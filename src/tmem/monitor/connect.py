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

from tmem.engine.api import ControlAPI
from tmem.engine.errors import ConnectionLost

ADDRESS_VARIABLE = "TMEM_ADDRESS"
"""The environment variable holding the daemon's address by default."""


def connect_control(address: str | None) -> ControlAPI:
    """Open an admin (or read-only) control connection to a tmem daemon.

    Args:
        address: where the daemon listens, as given by --connect or
            $TMEM_ADDRESS; None for the daemon's default address.

    Returns:
        A ControlAPI whose `snapshot()` serves as the monitor's source.

    Raises:
        ConnectionLost: the daemon cannot be reached.  Better raised from
            the returned object's calls than from here: `tmem top` started
            while the daemon is down can then show "disconnected" and
            retry, as it does when the daemon goes away later.
    """
    # XXX(#5): the daemon and its admin connection are being written;
    # until they land there is nothing to connect to.
    where = "its default address" if address is None else repr(address)
    raise ConnectionLost(
        f"cannot connect to the tmem daemon at {where}: the daemon is not "
        "available yet (only an embedded host can be monitored for now)")
