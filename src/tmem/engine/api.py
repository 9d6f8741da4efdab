"""The interfaces every layer above the engine codes against.

The embedded engine (`Host`, `Client`, `Pool`) and the daemon's client
library (`tmem.connect`) both provide them, so frontends, guests, the swap
device and the monitor run unchanged against either.

- `PoolAPI` / `ClientAPI`: what a client may do with its own pools.
- `ControlAPI`: what the authority may do (the host itself, or an admin
  connection to a daemon).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from tmem.engine.handles import OidLike, UuidLike
from tmem.engine.stats import ClientStats, PoolStats, Snapshot


class PoolAPI(Protocol):
    """A client's handle on one pool."""

    @property
    def pool_id(self) -> int: ...

    @property
    def persistent(self) -> bool: ...

    @property
    def shared(self) -> bool: ...

    @property
    def uuid(self) -> uuidlib.UUID | None: ...

    def put(self, oid: OidLike, index: int, page: bytes) -> bool:
        """Store a copy of the page; False if refused.  A refused put to
        a handle that held a page leaves it empty (never stale)."""

    def get(self, oid: OidLike, index: int) -> bytes | None:
        """The page, or None; a private ephemeral pool's page leaves."""

    def flush_page(self, oid: OidLike, index: int) -> bool: ...

    def flush_object(self, oid: OidLike) -> int: ...

    def put_many(self, items: Iterable[tuple[OidLike, int, bytes]]
                 ) -> list[bool]: ...

    def get_many(self, handles: Iterable[tuple[OidLike, int]]
                 ) -> list[bytes | None]: ...

    def flush_many(self, handles: Iterable[tuple[OidLike, int]]
                   ) -> list[bool]: ...

    def destroy(self) -> None: ...

    def stats(self) -> PoolStats: ...


class ClientAPI(Protocol):
    """A client: creates pools and reads its own statistics."""

    @property
    def name(self) -> str: ...

    @property
    def client_id(self) -> int: ...

    def new_pool(self, persistent: bool = False, shared: bool = False,
                 uuid: UuidLike | None = None) -> PoolAPI: ...

    def pool(self, pool_id: int) -> PoolAPI: ...

    def pools(self) -> Sequence[PoolAPI]: ...

    def stats(self) -> ClientStats: ...

    def close(self) -> None: ...


ClientRef = int | str
"""A client named by id, or by name when the name is unique."""


class ControlAPI(Protocol):
    """The authority's operations on clients and memory."""

    def snapshot(self) -> Snapshot: ...

    def freeze(self, ref: ClientRef) -> None: ...

    def thaw(self, ref: ClientRef) -> None: ...

    def set_weight(self, ref: ClientRef, weight: int) -> None: ...

    def set_cap(self, ref: ClientRef, cap: int | str | None) -> None: ...

    def set_compress(self, ref: ClientRef, compress: str) -> None: ...

    def authorize(self, ref: ClientRef, uuid: UuidLike) -> None: ...

    def revoke(self, ref: ClientRef, uuid: UuidLike) -> None: ...

    def freeable(self) -> int: ...

    def flush(self, nbytes: int | str) -> int: ...
