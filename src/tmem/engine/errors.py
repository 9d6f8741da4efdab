"""The exceptions every layer of tmem raises.

Rules:
- One root, `TmemError`.  Each class here but ConnectionLost is one wire
  status (the protocol maps them 1:1), so a client connected to a daemon
  sees the same class the embedded engine would have raised.
  ConnectionLost is the client library's own: it never crosses the wire.
  Outside this file only `RunFailed` (an experiment or benchmark could
  not finish) subclasses TmemError, and it is never sent either.
- Misuse by the caller (a bad id, a wrong page length) is `InvalidArgument`;
  a peer that breaks the protocol is `ProtocolError`.  They never mix.
- A refused put is not an exception: `put` returns False and a counter
  records why.  A miss is not an exception: `get` returns None.
- Messages are one line, state the broken rule and include the offending
  value's repr.
"""

from __future__ import annotations


class TmemError(Exception):
    """Root of every error tmem raises on purpose."""


class InvalidArgument(TmemError, ValueError):
    """An argument breaks a rule: id out of range, wrong page size, bad flags."""


class NoSuchPool(TmemError, LookupError):
    """The pool id names no live pool of this client."""


class NoSuchClient(TmemError, LookupError):
    """The client name or id names no live client."""


class PermissionDenied(TmemError, PermissionError):
    """The caller lacks the right: shared-pool auth, or an admin operation."""


class LimitExceeded(TmemError):
    """A configured limit is reached: pools, clients, shared pools, capacity."""


class Busy(TmemError):
    """The operation conflicts with one in progress (e.g. a migration)."""


class Moved(TmemError):
    """The session moved to another daemon (live migration).

    The client library handles it: it reconnects to `address` and resumes
    with `token`.  Message: "session moved to ADDRESS, resume token HEX".
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        head, _, token = message.rpartition(", resume token ")
        self.address = head.removeprefix("session moved to ")
        self.token = bytes.fromhex(token) if len(token) == 32 else b""


class ProtocolError(TmemError):
    """The peer sent bytes that break the wire protocol."""


class ConnectionLost(TmemError, ConnectionError):
    """The connection to the daemon broke and could not be resumed."""


class StreamError(TmemError):
    """A saved-state stream is truncated, corrupted, foreign or unsupported."""


class SwapError(TmemError):
    """The machine refused or failed a step of bringing swap on or off
    (mount, loop device, mkswap, swapon, a memory cgroup)."""


class ServerError(TmemError):
    """The daemon failed on a request through no fault of the caller."""


class CheckFailed(TmemError, AssertionError):
    """`Host.check()` found accounting that does not match the stored data."""
