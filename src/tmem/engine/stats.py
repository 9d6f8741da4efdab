"""Counters and the frozen snapshots the engine hands out.

Rules:
- The hot path only bumps plain int attributes of an `OpCounter` that
  belongs to one pool handle (one client's view of one pool).  Client and
  host figures are sums made when a snapshot is taken, so an operation
  pays for one counter object, not three.
- Every outcome and every refusal reason has its own counter.
- Snapshots are frozen dataclasses; nothing in them changes afterwards,
  and the monitor, the metrics endpoint and the wire read only them.
- When a pool handle or a client goes away its counters are folded into
  its parent's "retired" totals, so host totals never go backwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OpCounts:
    """Operation outcomes, for one pool handle or summed over many."""

    puts: int = 0
    """Put calls, whatever their outcome."""
    puts_stored: int = 0
    """Puts that stored the page (new handle or duplicate replaced)."""
    refused_full: int = 0
    """Puts refused: host capacity reached and nothing left to evict."""
    refused_cap: int = 0
    """Puts refused: the pool owner's cap reached and none of its own
    ephemeral pages left to evict."""
    refused_frozen: int = 0
    """Puts of a new handle refused because the client is frozen."""
    dup_replaced: int = 0
    """Puts to a handle already present whose data was replaced."""
    dup_flushed: int = 0
    """Puts to a present handle that were refused; the old data was
    flushed so it can never be read stale."""
    compress_poor: int = 0
    """Pages stored raw because they compressed by less than 1/8."""
    same_filled: int = 0
    """Pages stored as an 8-byte pattern (zero pages included)."""
    dedup_hits: int = 0
    """Pages that found identical data already stored and shared it."""
    gets: int = 0
    """Get calls."""
    gets_found: int = 0
    """Gets that returned a page."""
    flushes: int = 0
    """flush_page calls."""
    flushes_found: int = 0
    """flush_page calls that removed a page."""
    object_flushes: int = 0
    """flush_object calls."""
    object_flushes_found: int = 0
    """flush_object calls that removed at least one page."""
    object_flush_pages: int = 0
    """Pages removed by flush_object."""

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(*(a + b for a, b in zip(
            dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))


OP_FIELDS = tuple(f.name for f in dataclasses.fields(OpCounts))


@dataclass(slots=True)
class OpCounter:
    """The live, mutable twin of `OpCounts` (one per pool handle).

    The fields repeat OpCounts' so that type checkers see them; a test
    keeps the two lists equal.
    """

    puts: int = 0
    puts_stored: int = 0
    refused_full: int = 0
    refused_cap: int = 0
    refused_frozen: int = 0
    dup_replaced: int = 0
    dup_flushed: int = 0
    compress_poor: int = 0
    same_filled: int = 0
    dedup_hits: int = 0
    gets: int = 0
    gets_found: int = 0
    flushes: int = 0
    flushes_found: int = 0
    object_flushes: int = 0
    object_flushes_found: int = 0
    object_flush_pages: int = 0

    def snapshot(self) -> OpCounts:
        return OpCounts(*dataclasses.astuple(self))


@dataclass(frozen=True)
class PageCounts:
    """What pages are stored and how, for a pool or summed over many."""

    pages: int = 0
    """Pages stored."""
    bytes: int = 0
    """Accounted bytes: payload plus per-page metadata (before dedup)."""
    raw_pages: int = 0
    """Pages stored uncompressed."""
    compressed_pages: int = 0
    """Pages stored compressed."""
    compressed_bytes: int = 0
    """Payload bytes of the compressed pages."""
    same_filled_pages: int = 0
    """Pages stored as a repeated 8-byte pattern (no payload)."""
    zero_pages: int = 0
    """Same-filled pages that are all zero."""
    evictions: int = 0
    """Pages evicted (ephemeral pools only)."""

    def __add__(self, other: PageCounts) -> PageCounts:
        return PageCounts(*(a + b for a, b in zip(
            dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))


@dataclass(frozen=True)
class PoolStats:
    """One client's view of one pool."""

    pool_id: int
    client_id: int
    persistent: bool
    shared: bool
    uuid: str | None
    objects: int
    """Objects (distinct object ids) holding pages."""
    content: PageCounts
    """The pool's pages (for a shared pool: all sharers' pages)."""
    pages_peak: int
    """Most pages the pool has held at once."""
    ops: OpCounts
    """This client's operations on the pool."""
    sharers: int = 1
    """Clients using the pool (1 for a private pool)."""


@dataclass(frozen=True)
class ClientStats:
    """One client: settings, usage billed to it, and its operations."""

    client_id: int
    name: str
    weight: int
    cap: int | None
    """Bytes the client may hold, or None for no cap."""
    frozen: bool
    compress: str
    dedup_group: str | None
    pools: int
    ephemeral_pages: int
    persistent_pages: int
    ephemeral_bytes: int
    """Accounted bytes of ephemeral pages billed to the client."""
    persistent_bytes: int
    bytes_peak: int
    """Most bytes billed to the client at once."""
    evictions: int
    """Ephemeral pages evicted from the client."""
    ephemeral_ops: OpCounts
    """Operations on the client's ephemeral pools (incl. destroyed ones)."""
    persistent_ops: OpCounts
    """Operations on the client's persistent pools (incl. destroyed ones)."""
    connected: bool = True
    """False while a daemon session waits to be resumed."""

    @property
    def ops(self) -> OpCounts:
        return self.ephemeral_ops + self.persistent_ops


@dataclass(frozen=True)
class HostStats:
    """The whole host: memory, page kinds, and all operations."""

    taken_at: float
    """The host clock when the snapshot was taken (seconds)."""
    capacity: int
    used: int
    """Accounted bytes held now (dedup'd payload counted once)."""
    used_peak: int
    freeable: int
    """Bytes eviction could free now (all ephemeral memory)."""
    clients: int
    pools: int
    shared_pools: int
    ephemeral_content: PageCounts
    persistent_content: PageCounts
    dedup_saved_bytes: int
    """Payload bytes not stored twice thanks to dedup."""
    dedup_collisions: int
    """Payloads kept privately because a different stored payload had
    the same 64-bit hash (a share missed, never wrong data)."""
    ephemeral_ops: OpCounts
    persistent_ops: OpCounts
    compress: str
    dedup: bool

    @property
    def pages(self) -> int:
        return self.ephemeral_content.pages + self.persistent_content.pages

    @property
    def ops(self) -> OpCounts:
        return self.ephemeral_ops + self.persistent_ops

    @property
    def compression_ratio(self) -> float:
        """Page bytes stored over payload bytes kept (1.0 when empty)."""
        content = self.ephemeral_content + self.persistent_content
        payload = (content.raw_pages * 4096 + content.compressed_bytes
                   - self.dedup_saved_bytes)
        logical = content.pages * 4096
        return logical / payload if payload > 0 else 1.0


@dataclass(frozen=True)
class Snapshot:
    """Host, clients and pools taken together under one lock hold."""

    host: HostStats
    clients: tuple[ClientStats, ...] = ()
    pools: tuple[PoolStats, ...] = field(default=())


def to_dict(stats: Any) -> Any:
    """A snapshot as plain dicts and lists (JSON-ready)."""
    return dataclasses.asdict(stats)


def from_dict(cls: type[Any], data: Any) -> Any:
    """Rebuild a snapshot dataclass from `to_dict` output."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        target = _NESTED.get(f.name)
        if target is not None and isinstance(value, dict):
            value = from_dict(target, value)
        elif target is not None and isinstance(value, (list, tuple)):
            value = tuple(from_dict(target, v) for v in value)
        kwargs[f.name] = value
    return cls(**kwargs)


_NESTED: dict[str, type[Any]] = {
    "ops": OpCounts, "ephemeral_ops": OpCounts, "persistent_ops": OpCounts,
    "content": PageCounts, "ephemeral_content": PageCounts,
    "persistent_content": PageCounts, "host": HostStats,
    "clients": ClientStats, "pools": PoolStats,
}
