"""Pools: where pages live, and the put/get/flush data path.

A pool's pages live in a `PoolContents`; each client that uses the pool
holds a `Pool` handle on it (one handle for a private pool, one per sharer
for a shared pool).  Handles carry the client's operation counters.

Rules:
- Ephemeral pages may vanish at any time (eviction).  A get from a private
  ephemeral pool is exclusive: the page leaves the pool.  A get from a
  shared ephemeral pool keeps the page and makes it most recently used.
- A persistent page, once its put returned True, stays until it is flushed
  or its pool destroyed.  Nothing here evicts it.
- A put to a handle that holds a page first removes the old page; if the
  new one cannot be stored the put returns False and the handle is empty,
  so stale data is never readable.
- A frozen client's puts of new handles are refused; duplicate puts, gets
  and flushes still work.
- Every ephemeral page is in its owner client's LRU, keyed by
  ((oid << 32 | index) << SLOT_BITS) | owner_slot.  The owner is billed for
  the pool's pages: the creator, or for a shared pool the next sharer once
  the creator leaves.

Locking: callers hold the host lock (see host.py); nothing here takes it,
except the public methods of `Pool`, which take it once per call.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tmem.engine.codecs import DECOMPRESSORS
from tmem.engine.errors import NoSuchPool
from tmem.engine.handles import (
    INDEX_LIMIT,
    OID_LIMIT,
    PAGE_SIZE,
    OidLike,
    check_batch,
    check_index,
    check_oid,
    check_page,
    pool_flags,
)
from tmem.engine.pagestore import (
    STORED_POOR,
    STORED_SAME,
    DedupTable,
    Entry,
    decode,
    encode,
    payload_size,
)
from tmem.engine.stats import OpCounter, PageCounts, PoolStats

if TYPE_CHECKING:
    from tmem.engine.client import Client

SLOT_BITS = 16
SLOT_MASK = (1 << SLOT_BITS) - 1
INDEX_MASK = (1 << 32) - 1

PAGE_METADATA = 128
"""Bytes accounted per stored page beyond its payload (index entries)."""
LRU_METADATA = 128
"""Extra bytes accounted per ephemeral page (its LRU entry)."""


class PoolContents:
    """The pages of one pool and their accounting.

    Invariants:
    - `objects` maps oid -> {index: entry}; no inner dict is empty.
    - `pages` and the other counts equal what `objects` holds.
    - the owner's billed bytes include `bytes` of this pool.
    """

    __slots__ = (
        "bytes",
        "compressed_bytes",
        "compressed_pages",
        "dedup",
        "evictions",
        "handles",
        "journal",
        "metadata",
        "objects",
        "owner",
        "owner_slot",
        "pages",
        "pages_peak",
        "persistent",
        "raw_pages",
        "same_filled_pages",
        "shared",
        "uuid",
        "zero_pages",
    )

    def __init__(self, persistent: bool, shared: bool,
                 uuid: uuidlib.UUID | None, dedup: DedupTable | None,
                 owner: Client, owner_slot: int) -> None:
        self.persistent = persistent
        self.shared = shared
        self.uuid = uuid
        self.objects: dict[int, dict[int, Entry]] = {}
        self.owner = owner
        self.owner_slot = owner_slot
        self.handles: list[Pool] = []
        self.dedup = dedup
        self.metadata = self.metadata_for(persistent)
        self.pages = self.bytes = self.raw_pages = 0
        self.compressed_pages = self.compressed_bytes = 0
        self.same_filled_pages = self.zero_pages = 0
        self.evictions = self.pages_peak = 0
        self.journal: set[tuple[int, int]] | None = None
        """While a migration copies the pool: every handle changed since."""

    @staticmethod
    def metadata_for(persistent: bool) -> int:
        """Accounted metadata bytes per page of a pool of this kind."""
        return PAGE_METADATA + (0 if persistent else LRU_METADATA)

    def lru_key(self, oid: int, index: int) -> int:
        return (((oid << 32) | index) << SLOT_BITS) | self.owner_slot

    # -- adding and removing one page --------------------------------------

    def insert(self, oid: int, index: int, entry: Entry,
               payload_is_new: bool) -> None:
        """Store an entry for a handle that holds none; account for it."""
        pages = self.objects.get(oid)
        if pages is None:
            pages = self.objects[oid] = {}
        pages[index] = entry
        if self.journal is not None:
            self.journal.add((oid, index))

        # count
        size = self._count(entry, +1)
        self.pages += 1
        if self.pages > self.pages_peak:
            self.pages_peak = self.pages

        # bill
        owner = self.owner
        owner.bill(self.persistent, 1, size)
        owner.host.account(size if payload_is_new else
                           self.metadata)
        if not self.persistent:
            owner.lru[self.lru_key(oid, index)] = None

    def abandon(self, entry: Entry, payload_is_new: bool) -> None:
        """Undo `DedupTable.intern` for an entry that was never inserted.

        If the entry shared a payload whose other holders were all removed
        meanwhile (the duplicate it replaced, or evicted pages), dropping
        our reference frees bytes that those holders left accounted.
        """
        if type(entry) is not bytes or self.dedup is None:
            return
        if self.dedup.release(entry) and not payload_is_new:
            self.owner.host.account(-len(entry))

    def remove(self, oid: int, pages: dict[int, Entry], index: int,
               in_lru: bool = True) -> None:
        """Remove a present page and undo its accounting."""
        entry = pages.pop(index)
        if not pages:
            del self.objects[oid]
        if self.journal is not None:
            self.journal.add((oid, index))
        size = self._count(entry, -1)
        self.pages -= 1

        owner = self.owner
        owner.bill(self.persistent, -1, -size)
        freed = self.metadata
        if type(entry) is bytes and (
                self.dedup is None or self.dedup.release(entry)):
            freed = size
        owner.host.account(-freed)
        if in_lru and not self.persistent:
            del owner.lru[self.lru_key(oid, index)]

    def _count(self, entry: Entry, sign: int) -> int:
        """Add (+1) or take away (-1) an entry's kind counts; return bytes."""
        if type(entry) is int:
            self.same_filled_pages += sign
            if entry == 0:
                self.zero_pages += sign
            size = self.metadata
        else:
            length = len(entry)  # type: ignore[arg-type]
            size = self.metadata + length
            if length == PAGE_SIZE:
                self.raw_pages += sign
            else:
                self.compressed_pages += sign
                self.compressed_bytes += sign * length
        self.bytes += sign * size
        return size

    def clear(self) -> None:
        """Remove every page (pool destroyed)."""
        for oid in list(self.objects):
            pages = self.objects[oid]
            for index in list(pages):
                self.remove(oid, pages, index)

    def counts(self) -> PageCounts:
        return PageCounts(
            pages=self.pages, bytes=self.bytes, raw_pages=self.raw_pages,
            compressed_pages=self.compressed_pages,
            compressed_bytes=self.compressed_bytes,
            same_filled_pages=self.same_filled_pages,
            zero_pages=self.zero_pages, evictions=self.evictions)


class Pool:
    """A client's handle on a pool: put, get and flush pages by handle.

    A handle is (oid, index): oid an int below 2**192 - 1 (or a 3-tuple of
    u64), index a u32.  Pages are exactly 4096 bytes.  Methods raise
    `InvalidArgument` for a bad handle or page and `NoSuchPool` once the
    pool is destroyed; they are safe to call from several threads.

    Public methods take the host lock with acquire/try/finally rather than
    `with`: on CPython 3.11 that saves about 120 ns a call, a sixth of an
    uncompressed get.
    """

    __slots__ = ("_alive", "_client", "_contents", "_lock", "_ops", "pool_id")

    def __init__(self, client: Client, pool_id: int,
                 contents: PoolContents) -> None:
        self._client = client
        self._lock = client.host.lock
        self._contents = contents
        self._ops = OpCounter()
        self._alive = True
        self.pool_id = pool_id

    def __repr__(self) -> str:
        kind = "persistent" if self.persistent else "ephemeral"
        shared = " shared" if self.shared else ""
        return (f"<Pool {self.pool_id} of client {self._client.client_id}:"
                f" {kind}{shared}>")

    @property
    def persistent(self) -> bool:
        return self._contents.persistent

    @property
    def shared(self) -> bool:
        return self._contents.shared

    @property
    def uuid(self) -> uuidlib.UUID | None:
        return self._contents.uuid

    @property
    def flags(self) -> int:
        """The pool's flags in the original ABI layout."""
        return pool_flags(self.persistent, self.shared)

    @property
    def client(self) -> Client:
        return self._client

    # -- the public data path ------------------------------------------------

    def put(self, oid: OidLike, index: int, page: bytes) -> bool:
        """Store a copy of `page` at (oid, index).

        Returns:
            True if stored; False if refused (host full, client over its
            cap, or client frozen).  A refused put to a present handle
            leaves that handle empty.
        """
        # the common case inline; check_* raise with the rule otherwise
        if type(oid) is not int or not 0 <= oid < OID_LIMIT:
            oid = check_oid(oid)
        if type(index) is not int or not 0 <= index < INDEX_LIMIT:
            index = check_index(index)
        if type(page) is not bytes or len(page) != PAGE_SIZE:
            page = check_page(page)
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            return self._put(oid, index, page)
        finally:
            self._lock.release()

    def get(self, oid: OidLike, index: int) -> bytes | None:
        """Return the page at (oid, index), or None if it is not present.

        A hit in a private ephemeral pool removes the page.
        """
        # the common case inline; check_* raise with the rule otherwise
        if type(oid) is not int or not 0 <= oid < OID_LIMIT:
            oid = check_oid(oid)
        if type(index) is not int or not 0 <= index < INDEX_LIMIT:
            index = check_index(index)
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            return self._get(oid, index)
        finally:
            self._lock.release()

    def flush_page(self, oid: OidLike, index: int) -> bool:
        """Remove the page at (oid, index); return whether one was there."""
        oid, index = check_oid(oid), check_index(index)
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            return self._flush_page(oid, index)
        finally:
            self._lock.release()

    def flush_object(self, oid: OidLike) -> int:
        """Remove every page of object `oid`; return how many there were."""
        oid = check_oid(oid)
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            return self._flush_object(oid)
        finally:
            self._lock.release()

    def put_many(self, items: Iterable[tuple[OidLike, int, bytes]]
                 ) -> list[bool]:
        """Put many pages under one lock hold; results in order.

        Every handle and page is checked before any is stored.
        """
        checked = [(check_oid(o), check_index(i), check_page(p))
                   for o, i, p in check_batch(items, 3, "(oid, index, page)")]
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            return [self._put(o, i, p) for o, i, p in checked]
        finally:
            self._lock.release()

    def get_many(self, handles: Iterable[tuple[OidLike, int]]
                 ) -> list[bytes | None]:
        """Get many pages under one lock hold; results in order."""
        checked = [(check_oid(o), check_index(i))
                   for o, i in check_batch(handles, 2, "(oid, index)")]
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            return [self._get(o, i) for o, i in checked]
        finally:
            self._lock.release()

    def flush_many(self, handles: Iterable[tuple[OidLike, int]]
                   ) -> list[bool]:
        """Flush many pages under one lock hold; results in order."""
        checked = [(check_oid(o), check_index(i))
                   for o, i in check_batch(handles, 2, "(oid, index)")]
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            return [self._flush_page(o, i) for o, i in checked]
        finally:
            self._lock.release()

    def destroy(self) -> None:
        """Give up the pool.  A private pool's pages are freed at once; a
        shared pool keeps its pages for the other sharers."""
        self._lock.acquire()  # not `with`: see the class docstring
        try:
            if not self._alive:
                raise self._destroyed()
            self._client.release_pool(self)
        finally:
            self._lock.release()

    def stats(self) -> PoolStats:
        """A frozen snapshot of this pool as this client sees it."""
        with self._lock:
            return self.snapshot()

    # -- the same and more (lock held) -------------------------------------

    def _destroyed(self) -> NoSuchPool:
        return NoSuchPool(
            f"pool {self.pool_id} of client {self._client.name!r} "
            "was destroyed")

    def _put(self, oid: int, index: int, page: bytes) -> bool:
        ops = self._ops
        ops.puts += 1
        contents = self._contents
        client = self._client

        # find: a present handle is a duplicate put
        pages = contents.objects.get(oid)
        duplicate = pages is not None and index in pages
        if not duplicate and client.frozen:
            ops.refused_frozen += 1
            return False

        # encode
        entry, how = encode(page, client.codec)
        payload_is_new = True
        if contents.dedup is not None and type(entry) is bytes:
            entry, shared = contents.dedup.intern(entry)
            payload_is_new = not shared

        # drop the old data first: it is stale whatever happens next
        if duplicate:
            assert pages is not None
            contents.remove(oid, pages, index)

        # make room, then store
        refusal = None
        host = client.host
        if (host.used + contents.metadata + payload_size(entry)
                > host.capacity or contents.owner.cap is not None):
            refusal = host.make_room(contents, entry, payload_is_new)
        if refusal is not None:
            contents.abandon(entry, payload_is_new)
            setattr(ops, refusal, getattr(ops, refusal) + 1)
            if duplicate:
                ops.dup_flushed += 1
            return False
        contents.insert(oid, index, entry, payload_is_new)

        # count how it was stored
        ops.puts_stored += 1
        if duplicate:
            ops.dup_replaced += 1
        if how == STORED_SAME:
            ops.same_filled += 1
        elif how == STORED_POOR:
            ops.compress_poor += 1
        ops.dedup_hits += not payload_is_new
        return True

    def _get(self, oid: int, index: int) -> bytes | None:
        ops = self._ops
        ops.gets += 1
        contents = self._contents
        pages = contents.objects.get(oid)
        if pages is None:
            return None
        entry = pages.get(index)
        if entry is None:
            return None
        ops.gets_found += 1
        if type(entry) is bytes and len(entry) < PAGE_SIZE:
            page = DECOMPRESSORS[entry[0]](entry)  # decode(), a call less
        else:
            page = decode(entry)
        if contents.persistent:
            return page
        if contents.shared:
            contents.owner.lru.move_to_end(contents.lru_key(oid, index))
        else:
            contents.remove(oid, pages, index)
        return page

    def _flush_page(self, oid: int, index: int) -> bool:
        ops = self._ops
        ops.flushes += 1
        contents = self._contents
        pages = contents.objects.get(oid)
        if pages is None or index not in pages:
            return False
        contents.remove(oid, pages, index)
        ops.flushes_found += 1
        return True

    def _flush_object(self, oid: int) -> int:
        ops = self._ops
        ops.object_flushes += 1
        contents = self._contents
        pages = contents.objects.get(oid)
        if pages is None:
            return 0
        count = len(pages)
        for index in list(pages):
            contents.remove(oid, pages, index)
        ops.object_flushes_found += 1
        ops.object_flush_pages += count
        return count

    def flush_some(self, limit: int) -> int:
        """Flush up to `limit` pages, whichever (lock held); return how many.

        For tearing down a large pool in slices, so the lock holder can let
        others in between.  The client did not ask: nothing is counted.
        """
        contents = self._contents
        flushed = 0
        for oid in list(contents.objects):
            pages = contents.objects[oid]
            for index in list(pages)[:limit - flushed]:
                contents.remove(oid, pages, index)
                flushed += 1
            if flushed >= limit:
                break
        return flushed

    def restore_page(self, oid: int, index: int, entry: Entry) -> None:
        """Store an already encoded entry (restore; lock held, room made).

        A page already at the handle is replaced.
        """
        contents = self._contents
        pages = contents.objects.get(oid)
        if pages is not None and index in pages:
            contents.remove(oid, pages, index)
        payload_is_new = True
        if contents.dedup is not None and type(entry) is bytes:
            entry, shared = contents.dedup.intern(entry)
            payload_is_new = not shared
        contents.insert(oid, index, entry, payload_is_new)

    def restore_flush(self, oid: int, index: int) -> None:
        """Remove a handle's page, if any, as a restore says (lock held):
        the client did not ask, so no operation is counted."""
        pages = self._contents.objects.get(oid)
        if pages is not None and index in pages:
            self._contents.remove(oid, pages, index)

    def entry(self, oid: int, index: int) -> Entry | None:
        """The stored entry of a handle, or None (lock held)."""
        pages = self._contents.objects.get(oid)
        return None if pages is None else pages.get(index)

    def handles(self) -> list[tuple[int, int]]:
        """Every handle that holds a page, in no order (lock held)."""
        return [(oid, index) for oid, pages in self._contents.objects.items()
                for index in pages]

    # -- the journal of changed handles (lock held) -------------------------

    def begin_journal(self) -> None:
        """Note every handle whose page changes from now on (a put, a
        flush, an eviction): live migration sends them again."""
        self._contents.journal = set()

    def take_journal(self) -> set[tuple[int, int]]:
        """The handles changed since the journal began or was last taken;
        the journal starts afresh."""
        taken = self._contents.journal or set()
        self._contents.journal = set()
        return taken

    @property
    def journal_length(self) -> int:
        """Handles changed since the journal was last taken."""
        return len(self._contents.journal or ())

    def end_journal(self) -> None:
        self._contents.journal = None

    def snapshot(self) -> PoolStats:
        contents = self._contents
        return PoolStats(
            pool_id=self.pool_id, client_id=self._client.client_id,
            persistent=contents.persistent, shared=contents.shared,
            uuid=None if contents.uuid is None else str(contents.uuid),
            objects=len(contents.objects), content=contents.counts(),
            pages_peak=contents.pages_peak, ops=self._ops.snapshot(),
            sharers=len(contents.handles))

    def pages_sorted(self) -> Sequence[tuple[int, int, Entry]]:
        """Every (oid, index, entry), sorted by handle (for save/restore)."""
        return [(oid, index, entry)
                for oid in sorted(self._contents.objects)
                for index, entry in sorted(
                    self._contents.objects[oid].items())]

