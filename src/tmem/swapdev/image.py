"""The swap image: a fixed-size file whose pages live in a persistent pool.

This module is the file's logic only (no FUSE, no I/O), so it can be
tested without mounting anything; fusefs.py serves it.

Rules:
- Byte offset -> handle: page number p = offset // PAGE_SIZE lives at
  (oid p // OBJECT_PAGES, index p % OBJECT_PAGES).  An object is one swap
  cluster (512 pages, 2 MiB), the unit the kernel frees and discards, so
  a discard of a whole cluster is one `flush_object`.
- Writes and punched holes cover whole pages at page offsets; anything
  else is refused with EINVAL.  The loop device in front of the image
  uses 4 KiB sectors, so the kernel never sends less.  Read-modify-write
  was rejected: a refused put empties the handle (the engine's rule), so
  the unwritten part of the page would be lost without a trace.
- Reads may start and end anywhere; a page never written (or flushed)
  reads as zeros, and reads stop at the end of the image.
- A write the pool refuses, even in part, fails whole with EIO and its
  pages are flushed: the kernel keeps the data and retries, and nothing
  half-written stays readable.  Data is never dropped silently.
- Failures are `OSError` with an errno, the currency of a file system;
  the messages name the values and the rule.  A pool call that raises
  (a daemon gone, say) becomes EIO too.  Each kind of failure has its
  counter: refused writes, bad requests, pool errors.

Concurrency: any number of threads may call in at once.  Each call is a
few pool batch calls, each atomic in the pool; the kernel never has two
writes to one swap slot in flight.  The counters take their own lock.
"""

from __future__ import annotations

import dataclasses
import errno
import threading
from dataclasses import dataclass
from typing import Any

from tmem.engine.api import PoolAPI
from tmem.engine.errors import InvalidArgument, TmemError
from tmem.engine.handles import PAGE_SIZE

OBJECT_PAGES = 512
"""Pages per pool object: one swap cluster (the kernel's SWAPFILE_CLUSTER)."""

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
_FLUSHING_MODES = (
    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_ZERO_RANGE,
    FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
)

_ZERO_PAGE = bytes(PAGE_SIZE)


@dataclass(frozen=True)
class ImageStats:
    """What the image has served, and what its pool holds now."""

    size: int
    """Bytes in the image."""
    reads: int = 0
    """Read calls."""
    read_bytes: int = 0
    writes: int = 0
    """Write calls that stored their pages."""
    write_bytes: int = 0
    refused_writes: int = 0
    """Write calls failed with EIO because the pool refused a page."""
    refused_pages: int = 0
    """Pages the pool refused (in failed writes)."""
    bad_requests: int = 0
    """Calls refused for their range or mode (EINVAL, ENOSPC,
    EOPNOTSUPP): the kernel sent what no swap device is sent."""
    pool_errors: int = 0
    """Calls failed with EIO because the pool raised an error."""
    discards: int = 0
    """Punch-hole (or zero-range) calls: the kernel freed swap slots."""
    discard_bytes: int = 0
    discarded_pages: int = 0
    """Pages a discard found stored and flushed."""
    pages_stored: int = 0
    """Pages the pool holds for the image now."""
    pages_peak: int = 0
    """Most pages the pool has held at once."""
    stored_bytes: int = 0
    """The pool's accounted bytes: payload plus per-page metadata."""
    payload_bytes: int = 0
    """Bytes of page data kept (raw plus compressed)."""
    compressed_pages: int = 0
    raw_pages: int = 0
    same_filled_pages: int = 0

    @property
    def compression_ratio(self) -> float:
        """Page bytes stored over payload bytes kept (1.0 when empty)."""
        if not self.payload_bytes:
            return 1.0
        return self.pages_stored * PAGE_SIZE / self.payload_bytes

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self),
                "compression_ratio": self.compression_ratio}


def handle_of(page_number: int) -> tuple[int, int]:
    """The pool handle (oid, index) of a page number."""
    return divmod(page_number, OBJECT_PAGES)


class SwapImage:
    """A file of `size` bytes kept page by page in a persistent pool.

    Args:
        pool: a persistent pool the image may use alone; whatever it
            holds is flushed first, so the image starts as zeros.
        size: bytes, a positive multiple of PAGE_SIZE.

    Raises:
        InvalidArgument: the pool is ephemeral or the size is not whole
            pages.
    """

    def __init__(self, pool: PoolAPI, size: int) -> None:
        if not pool.persistent:
            raise InvalidArgument(
                f"pool {pool.pool_id!r} is ephemeral: swap pages must "
                "never vanish, so the image needs a persistent pool")
        if size <= 0 or size % PAGE_SIZE:
            raise InvalidArgument(
                f"image size {size!r} must be a positive multiple of "
                f"{PAGE_SIZE}")
        self.pool = pool
        self.size = size
        self.pages = size // PAGE_SIZE
        self._lock = threading.Lock()
        self._counts = _Counts()
        self.clear()

    def __repr__(self) -> str:
        return f"<SwapImage {self.size} bytes in pool {self.pool.pool_id}>"

    # -- the file operations ------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length), cut at the end of the image."""
        if offset < 0 or length < 0:
            raise self._bad(errno.EINVAL, f"read at offset {offset!r} of "
                            f"{length!r} bytes: both must be >= 0")
        end = min(offset + length, self.size)
        if end <= offset:
            return b""

        # the covering pages, then the slice asked for
        first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
        try:
            got = self.pool.get_many(
                handle_of(p) for p in range(first, last + 1))
        except TmemError as error:
            raise self._pool_error("read", offset, error) from None
        data = b"".join(_ZERO_PAGE if page is None else page
                        for page in got)
        skip = offset - first * PAGE_SIZE
        if skip or len(data) != end - offset:
            data = data[skip:skip + end - offset]
        self._count(reads=1, read_bytes=len(data))
        return data

    def write(self, offset: int, data: bytes) -> int:
        """Store whole pages at `offset`; return len(data).

        Raises:
            OSError: EINVAL for a partial page, ENOSPC past the end, EIO
                when the pool refuses a page (the write's pages are then
                flushed).
        """
        first = self._check_range("write", offset, len(data))
        items = [(*divmod(first + n, OBJECT_PAGES),
                  bytes(data[at:at + PAGE_SIZE]))  # one copy for bytes
                 for n, at in enumerate(range(0, len(data), PAGE_SIZE))]
        try:
            stored = self.pool.put_many(items)
            refused = stored.count(False)
            if refused:  # fail the whole write, leave none of it readable
                self.pool.flush_many((o, i) for o, i, _ in items)
        except TmemError as error:
            raise self._pool_error("write", offset, error) from None
        if refused:
            self._count(refused_writes=1, refused_pages=refused)
            raise OSError(errno.EIO, f"write at offset {offset!r}: the pool "
                          f"refused {refused} of {len(items)} pages, so the "
                          "write fails whole")
        self._count(writes=1, write_bytes=len(data))
        return len(data)

    def punch(self, offset: int, length: int) -> int:
        """Flush the pages of [offset, offset + length); return how many
        were stored.  They read as zeros afterwards."""
        first = self._check_range("punch", offset, length)
        try:
            flushed = self._flush_range(first, first + length // PAGE_SIZE)
        except TmemError as error:
            raise self._pool_error("punch", offset, error) from None
        self._count(discards=1, discard_bytes=length, discarded_pages=flushed)
        return flushed

    def _flush_range(self, first: int, end: int) -> int:
        flushed = 0
        page = first
        while page < end:
            oid, index = handle_of(page)
            if index == 0 and end - page >= OBJECT_PAGES:
                # a whole cluster: one call frees it
                flushed += self.pool.flush_object(oid)
                page += OBJECT_PAGES
                continue
            stop = min(end, (oid + 1) * OBJECT_PAGES)
            found = self.pool.flush_many(
                handle_of(p) for p in range(page, stop))
            flushed += sum(found)
            page = stop
        return flushed

    def fallocate(self, mode: int, offset: int, length: int) -> int:
        """The file system's fallocate: punching a hole (the kernel's
        discard) and zeroing a range both flush; return pages flushed.

        Raises:
            OSError: EOPNOTSUPP for any other mode (the image cannot
                reserve memory ahead of use).
        """
        if mode not in _FLUSHING_MODES:
            raise self._bad(errno.EOPNOTSUPP, f"fallocate mode {mode:#x} "
                            "is not supported: only punch-hole|keep-size "
                            "and zero-range flush pages")
        return self.punch(offset, length)

    def clear(self) -> int:
        """Flush every page of the image; return how many were stored."""
        objects = -(-self.pages // OBJECT_PAGES)
        return sum(self.pool.flush_object(oid) for oid in range(objects))

    # -- statistics ---------------------------------------------------------

    def stats(self) -> ImageStats:
        """The counters, with the pool's content taken now."""
        pool = self.pool.stats()
        content = pool.content
        with self._lock:
            counts = dataclasses.asdict(self._counts)
        return ImageStats(
            size=self.size, **counts, pages_stored=content.pages,
            pages_peak=pool.pages_peak, stored_bytes=content.bytes,
            payload_bytes=content.raw_pages * PAGE_SIZE
            + content.compressed_bytes,
            compressed_pages=content.compressed_pages,
            raw_pages=content.raw_pages,
            same_filled_pages=content.same_filled_pages)

    # -- helpers ------------------------------------------------------------

    def _check_range(self, what: str, offset: int, length: int) -> int:
        """Return the first page number, or raise for a bad range."""
        if offset < 0 or offset % PAGE_SIZE or length <= 0 \
                or length % PAGE_SIZE:
            raise self._bad(errno.EINVAL, f"{what} at offset {offset!r} of "
                            f"{length!r} bytes: the swap image takes whole "
                            f"{PAGE_SIZE}-byte pages at page offsets")
        if offset + length > self.size:
            raise self._bad(errno.ENOSPC, f"{what} at offset {offset!r} of "
                            f"{length!r} bytes ends past the image's "
                            f"{self.size} bytes")
        return offset // PAGE_SIZE

    def _bad(self, code: int, message: str) -> OSError:
        self._count(bad_requests=1)
        return OSError(code, message)

    def _pool_error(self, what: str, offset: int,
                    error: TmemError) -> OSError:
        self._count(pool_errors=1)
        return OSError(errno.EIO, f"{what} at offset {offset!r} failed in "
                       f"the pool: {error}")

    def _count(self, **increments: int) -> None:
        with self._lock:
            counts = self._counts
            for name, value in increments.items():
                setattr(counts, name, getattr(counts, name) + value)


@dataclass
class _Counts:
    """The live twin of ImageStats' counters (under SwapImage._lock)."""

    reads: int = 0
    read_bytes: int = 0
    writes: int = 0
    write_bytes: int = 0
    refused_writes: int = 0
    refused_pages: int = 0
    bad_requests: int = 0
    pool_errors: int = 0
    discards: int = 0
    discard_bytes: int = 0
    discarded_pages: int = 0
