"""Cleancache: a second chance for clean file pages, kept in an ephemeral
pool and keyed by file.

How the kernel's names map onto tmem's:
- a filesystem is a pool: private (`Cleancache.mount(client)`), or for a
  cluster filesystem the shared pool named by the filesystem's UUID
  (`Cleancache.mount(client, uuid)`), so every node sees one cache;
- a file is an object id: its identity for as long as it exists, e.g.
  `inode_key(inode, generation, device)` or an opaque file handle of up to
  24 bytes, `handle_key(fh)`;
- a page's offset in the file (in pages) is the index, a u32.  Offsets
  beyond it are never cached: a get misses, a put is dropped, and both are
  counted (`beyond_index`), as the Xen driver skipped them.

Calls, and when a kernel makes them: `get` on a page-cache miss (a hit in a
private pool takes the page out of tmem); `put` when a clean page leaves the
page cache; `invalidate_page` on a write, `invalidate_inode` on truncate or
delete, `invalidate_fs` at unmount.  In tmem's words an invalidate is a
flush.  Batch forms (`get_many`, `put_many`, `invalidate_many`) cost one
pool call, which matters when a pool call is a network round trip.

Coherency rule: once `invalidate_page` or `invalidate_inode` returns, no
get returns data from a put that was called before the invalidate was.
A put called after the invalidate returned holds new data: keeping that
true is the caller's promise, as the page lock keeps it in the kernel.

How: every file falls in one of `stripes` epoch counters (by its key).
An invalidate bumps its stripes' epochs, flushes, then waits for the puts
that began under an older epoch.  Each such put, once its pages are
stored, sees the epoch moved and flushes them again before it counts as
finished (`puts_raced`).  Two files sharing a stripe cost only a needless
flush, which a cache may always do.  Rejected: a lock per file held across
the pool call (a remote round trip would stall every get of that file),
and a set of invalidated keys (grows without bound).

Gets take no part: a get running while an invalidate runs may return what
it finds, as it would had it run just before.  Coherency between nodes of
a cluster filesystem (several Cleancache objects on one shared pool) is
the filesystem's job, as with ocfs2's cluster locks.

Concurrency: every method may be called from many threads.  The one
internal lock guards epochs, in-flight puts and counters; it is never held
across a pool call.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from tmem.engine.api import ClientAPI, PoolAPI
from tmem.engine.errors import InvalidArgument, NoSuchPool
from tmem.engine.handles import (
    INDEX_LIMIT,
    OID_LIMIT,
    PAGE_SIZE,
    UuidLike,
    check_oid,
    check_page,
)

U64_LIMIT = 1 << 64
HANDLE_BYTES = 24
DEFAULT_STRIPES = 1024


def inode_key(inode: int, generation: int = 0, device: int = 0) -> int:
    """A file's object id from its inode number, generation and device.

    Each is a u64; the id is inode | generation << 64 | device << 128.

    Raises:
        InvalidArgument: a part is not a u64, or all three are all ones
            (the reserved id).
    """
    for what, value in (("inode", inode), ("generation", generation),
                        ("device", device)):
        if type(value) is not int or not 0 <= value < U64_LIMIT:
            raise InvalidArgument(f"{what} {value!r} must be a u64")
    key = inode | generation << 64 | device << 128
    if key == OID_LIMIT:
        raise InvalidArgument(
            f"file key (inode {inode}, generation {generation}, device "
            f"{device}) is all ones, which tmem reserves")
    return key


def handle_key(handle: bytes) -> int:
    """A file's object id from an opaque file handle of 1 to 24 bytes.

    The bytes are read little-endian, so handles that differ only by
    trailing zero bytes give one key: a filesystem must use handles of one
    length, as the kernel's `encode_fh` does.

    Raises:
        InvalidArgument: not bytes, a bad length, or 24 bytes of 0xff.
    """
    if not isinstance(handle, bytes | bytearray):
        raise InvalidArgument(
            f"file handle {handle!r} must be bytes, not "
            f"{type(handle).__name__}")
    if not 1 <= len(handle) <= HANDLE_BYTES:
        raise InvalidArgument(
            f"file handle {bytes(handle)!r} is {len(handle)} bytes; it "
            f"must be 1 to {HANDLE_BYTES}")
    key = int.from_bytes(handle, "little")
    if key == OID_LIMIT:
        raise InvalidArgument(
            f"file handle {bytes(handle)!r} is all ones, which tmem reserves")
    return key


@dataclass(frozen=True)
class CleancacheStats:
    """What a Cleancache did, counted per outcome."""

    gets: int = 0
    """Pages asked for (batch items included)."""
    hits: int = 0
    """Gets that returned a page."""
    puts: int = 0
    """Pages offered."""
    puts_stored: int = 0
    """Puts the pool accepted (and that no invalidate overtook)."""
    puts_refused: int = 0
    """Puts the pool refused (full, capped or frozen)."""
    puts_raced: int = 0
    """Stored puts flushed again because an invalidate overtook them."""
    beyond_index: int = 0
    """Gets and puts skipped: the offset does not fit the u32 index."""
    invalidate_pages: int = 0
    """invalidate_page calls (batch items included)."""
    invalidate_pages_found: int = 0
    """Of those, pages that were in the pool."""
    invalidate_inodes: int = 0
    """invalidate_inode calls."""
    invalidate_inode_pages: int = 0
    """Pages those removed."""
    invalidate_fs: int = 0
    """invalidate_fs calls that unmounted the filesystem."""

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Counts:
    """The live twin of CleancacheStats (same fields)."""

    gets: int = 0
    hits: int = 0
    puts: int = 0
    puts_stored: int = 0
    puts_refused: int = 0
    puts_raced: int = 0
    beyond_index: int = 0
    invalidate_pages: int = 0
    invalidate_pages_found: int = 0
    invalidate_inodes: int = 0
    invalidate_inode_pages: int = 0
    invalidate_fs: int = 0


class Cleancache:
    """One filesystem's cleancache over an ephemeral pool.

    Args:
        pool: an ephemeral pool (private, or shared for a cluster fs).
        stripes: epoch counters files are spread over (see the module).

    Raises:
        InvalidArgument: the pool is persistent, or stripes < 1.
    """

    def __init__(self, pool: PoolAPI, stripes: int = DEFAULT_STRIPES
                 ) -> None:
        if pool.persistent:
            raise InvalidArgument(
                f"pool {pool.pool_id} is persistent; cleancache needs an "
                "ephemeral pool")
        if type(stripes) is not int or stripes < 1:
            raise InvalidArgument(f"stripes {stripes!r} must be an int >= 1")
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._epochs = [0] * stripes
        self._in_flight: dict[int, list[tuple[int, int]]] = {}
        self._tickets = itertools.count()
        self._counts = _Counts()
        self._unmounted = False

    @classmethod
    def mount(cls, client: ClientAPI, uuid: UuidLike | None = None,
              stripes: int = DEFAULT_STRIPES) -> Cleancache:
        """A new filesystem: a private pool, or the shared pool `uuid`.

        Raises:
            PermissionDenied, LimitExceeded: as `ClientAPI.new_pool`.
        """
        pool = client.new_pool(persistent=False, shared=uuid is not None,
                               uuid=uuid)
        return cls(pool, stripes)

    @property
    def pool(self) -> PoolAPI:
        return self._pool

    @property
    def mounted(self) -> bool:
        return not self._unmounted

    def __repr__(self) -> str:
        state = "mounted" if self.mounted else "unmounted"
        return f"<Cleancache on pool {self._pool.pool_id}, {state}>"

    # -- gets --------------------------------------------------------------

    def get(self, key: int, offset: int) -> bytes | None:
        """Return the page of file `key` at page `offset`, or None."""
        return self.get_many(((key, offset),))[0]

    def get_many(self, items: Iterable[tuple[int, int]]
                 ) -> list[bytes | None]:
        """Get many pages with one pool call; results in order.

        Raises:
            InvalidArgument: a bad key or offset (before any page moves).
            NoSuchPool: the filesystem was unmounted.
        """
        checked = [_check_handle(key, offset) for key, offset in items]
        self._check_mounted()

        # ask the pool only for the offsets it can hold
        wanted = [(k, o) for k, o in checked if o < INDEX_LIMIT]
        found = self._pool.get_many(wanted) if wanted else []
        answers = iter(found)
        results = [next(answers) if o < INDEX_LIMIT else None
                   for _, o in checked]

        with self._cond:
            counts = self._counts
            counts.gets += len(checked)
            counts.beyond_index += len(checked) - len(wanted)
            counts.hits += sum(page is not None for page in found)
        return results

    # -- puts --------------------------------------------------------------

    def put(self, key: int, offset: int, page: bytes) -> bool:
        """Offer a clean page; return whether tmem kept it."""
        return self.put_many(((key, offset, page),))[0]

    def put_many(self, items: Iterable[tuple[int, int, bytes]]
                 ) -> list[bool]:
        """Offer many clean pages with one pool call; results in order.

        Raises:
            InvalidArgument: a bad key, offset or page (nothing is put).
            NoSuchPool: the filesystem was unmounted.
        """
        checked = [(*_check_handle(key, offset), _check_page(page))
                   for key, offset, page in items]
        wanted = [item for item in checked if item[1] < INDEX_LIMIT]
        ticket, marks = self._begin_puts(wanted)
        try:
            stored = self._pool.put_many(wanted) if wanted else []
            raced = self._overtaken(stored, marks)
            if raced:
                self._pool.flush_many([wanted[i][:2] for i in raced])
        finally:
            self._end_puts(ticket)
        for i in raced:
            stored[i] = False

        with self._cond:
            counts = self._counts
            counts.puts += len(checked)
            counts.beyond_index += len(checked) - len(wanted)
            counts.puts_refused += stored.count(False) - len(raced)
            counts.puts_stored += stored.count(True)
            counts.puts_raced += len(raced)
        results = iter(stored)
        return [next(results) if o < INDEX_LIMIT else False
                for _, o, _ in checked]

    def _begin_puts(self, items: Sequence[tuple[int, int, bytes]]
                    ) -> tuple[int, list[tuple[int, int]]]:
        """Register puts in flight; return a ticket and (stripe, epoch)s."""
        with self._cond:
            if self._unmounted:
                raise self._unmounted_error()
            marks = [(stripe, self._epochs[stripe]) for stripe in
                     (self._stripe(key) for key, _, _ in items)]
            ticket = next(self._tickets)
            self._in_flight[ticket] = marks
            return ticket, marks

    def _overtaken(self, stored: Sequence[bool],
                   marks: Sequence[tuple[int, int]]) -> list[int]:
        """Positions of stored puts whose stripe an invalidate has moved
        since they began."""
        with self._cond:
            epochs = self._epochs
            return [i for i, (ok, (stripe, epoch))
                    in enumerate(zip(stored, marks, strict=True))
                    if ok and epochs[stripe] != epoch]

    def _end_puts(self, ticket: int) -> None:
        with self._cond:
            del self._in_flight[ticket]
            self._cond.notify_all()

    # -- invalidates -------------------------------------------------------

    def invalidate_page(self, key: int, offset: int) -> bool:
        """Drop one page (the file's page was written); return whether it
        was in tmem."""
        return self.invalidate_many(((key, offset),))[0]

    def invalidate_many(self, items: Iterable[tuple[int, int]]
                        ) -> list[bool]:
        """Drop many pages with one pool call; results in order.

        Returns once no earlier put of these files can still land.

        Raises:
            InvalidArgument: a bad key or offset (nothing is dropped).
            NoSuchPool: the filesystem was unmounted.
        """
        checked = [_check_handle(key, offset) for key, offset in items]
        wanted = [(k, o) for k, o in checked if o < INDEX_LIMIT]
        marks = self._bump({self._stripe(k) for k, _ in wanted})
        found = self._pool.flush_many(wanted) if wanted else []
        self._wait_for_older_puts(marks)

        with self._cond:
            self._counts.invalidate_pages += len(checked)
            self._counts.invalidate_pages_found += found.count(True)
        answers = iter(found)
        return [next(answers) if o < INDEX_LIMIT else False
                for _, o in checked]

    def invalidate_inode(self, key: int) -> int:
        """Drop every page of a file (truncated or deleted); return how
        many were in tmem.  Returns once no earlier put of the file can
        still land.

        Raises:
            InvalidArgument: a bad key.
            NoSuchPool: the filesystem was unmounted.
        """
        oid = check_oid(key)
        marks = self._bump({self._stripe(oid)})
        removed = self._pool.flush_object(oid)
        self._wait_for_older_puts(marks)

        with self._cond:
            self._counts.invalidate_inodes += 1
            self._counts.invalidate_inode_pages += removed
        return removed

    def invalidate_fs(self) -> None:
        """Unmount: wait for puts in flight, then give up the pool (a
        private pool's pages go at once; a shared pool keeps them for the
        other nodes).  Later calls raise NoSuchPool; calling this again
        does nothing."""
        with self._cond:
            if self._unmounted:
                return
            self._unmounted = True
            self._cond.wait_for(lambda: not self._in_flight)
            self._counts.invalidate_fs += 1
        self._pool.destroy()

    def _bump(self, stripes: set[int]) -> dict[int, int]:
        """Move these stripes to a new epoch; return the new epochs."""
        with self._cond:
            if self._unmounted:
                raise self._unmounted_error()
            for stripe in stripes:
                self._epochs[stripe] += 1
            return {stripe: self._epochs[stripe] for stripe in stripes}

    def _wait_for_older_puts(self, marks: dict[int, int]) -> None:
        """Block until no put begun before `marks` is still in flight."""
        def older_puts_done() -> bool:
            return not any(epoch < marks.get(stripe, epoch)
                           for flight in self._in_flight.values()
                           for stripe, epoch in flight)

        with self._cond:
            self._cond.wait_for(older_puts_done)

    # -- helpers -----------------------------------------------------------

    def _stripe(self, key: int) -> int:
        return hash(key) % len(self._epochs)

    def _check_mounted(self) -> None:
        if self._unmounted:
            raise self._unmounted_error()

    def _unmounted_error(self) -> NoSuchPool:
        return NoSuchPool(
            f"cleancache on pool {self._pool.pool_id} was unmounted "
            "(invalidate_fs); mount a new one")

    def stats(self) -> CleancacheStats:
        """A frozen snapshot of the counters."""
        with self._cond:
            return CleancacheStats(**asdict(self._counts))


def _check_handle(key: object, offset: object) -> tuple[int, int]:
    """Return (oid, offset); offsets may exceed the index (not cached)."""
    oid = key if type(key) is int and 0 <= key < OID_LIMIT else \
        check_oid(key)
    if type(offset) is not int or offset < 0:
        raise InvalidArgument(
            f"page offset {offset!r} must be a non-negative int")
    return oid, offset


def _check_page(page: object) -> bytes:
    if type(page) is bytes and len(page) == PAGE_SIZE:
        return page
    return check_page(page)
