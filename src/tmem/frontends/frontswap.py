"""Frontswap: swap slots kept in a persistent pool instead of on a disk.

How the kernel's names map onto tmem's, as the Xen driver mapped them:
- one persistent pool serves every swap area (a swap "type") the guest
  turns on with `init_area` (swapon);
- slot `offset` of area `area` is object id (area << 4) | (offset & 15),
  index offset >> 4: sixteen objects per area, so `invalidate_area`
  (swapoff) is sixteen object flushes.

Calls: `store` when a page is swapped out (False: tmem refused it, write
it to the swap disk); `load` when it is swapped in (None: it is not in
tmem, read the swap disk); `invalidate_page` when the slot is freed;
`invalidate_area` at swapoff; `shrink` to pull pages back out of tmem
(selfshrinking), handing them to the caller for its swap disk.  Batch
forms (`store_many`, `load_many`, `invalidate_many`) cost one pool call.

Rules:
- A bitmap per area says which slots are in tmem; `load` of a slot whose
  bit is clear never calls the pool.
- A store to a slot already in tmem first flushes the old page and clears
  its bit, as later kernels did, so a refused store never leaves a stale
  copy behind whatever the backend does with duplicate puts.
- A load of a slot whose bit is set must find the page: persistent pages
  stay until flushed.  If the pool has lost it, `load` raises CheckFailed
  rather than let the caller read a swap disk that never had the page.
- Bad input (an area not turned on, an offset past the area, a bad page)
  raises InvalidArgument before anything changes.

Concurrency: the internal lock guards the bitmaps and counters only and
is never held across a pool call.  Callers serialise operations on one
slot, as the kernel's page lock does; `shrink` skips a slot invalidated
under it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

from tmem.engine.api import ClientAPI, PoolAPI
from tmem.engine.errors import CheckFailed, InvalidArgument
from tmem.engine.handles import INDEX_LIMIT, PAGE_SIZE, check_page

MAX_AREAS = 32
"""Swap areas per pool: the kernel's MAX_SWAPFILES bound (5 bits)."""
MAX_SLOTS = INDEX_LIMIT << 4
"""Slots per area: the index (offset >> 4) is a u32."""
SHRINK_BATCH = 64
"""Slots `shrink` moves per pool call."""


class SwapPage(NamedTuple):
    """A page `shrink` took out of tmem, for the caller's swap disk."""

    area: int
    offset: int
    page: bytes


@dataclass(frozen=True)
class FrontswapStats:
    """What a Frontswap did, counted per outcome, and what it holds."""

    stores: int = 0
    """Pages offered (batch items included)."""
    stores_accepted: int = 0
    """Stores the pool kept."""
    stores_refused: int = 0
    """Stores refused: the caller wrote those pages to its swap disk."""
    dup_stores: int = 0
    """Stores to a slot already in tmem (old page flushed first)."""
    loads: int = 0
    """Pages asked for."""
    loads_found: int = 0
    """Loads served from tmem."""
    loads_absent: int = 0
    """Loads of slots not in tmem (the caller reads its swap disk)."""
    invalidates: int = 0
    """invalidate_page calls (batch items included)."""
    invalidates_found: int = 0
    """Of those, slots that were in tmem."""
    area_invalidates: int = 0
    """invalidate_area calls."""
    area_invalidate_pages: int = 0
    """Pages those removed."""
    shrinks: int = 0
    """shrink calls."""
    shrink_pages: int = 0
    """Pages shrink handed back to the caller."""
    pages: int = 0
    """Slots in tmem now."""
    pages_peak: int = 0
    """Most slots in tmem at once."""

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Counts:
    """The live twin of FrontswapStats (same fields)."""

    stores: int = 0
    stores_accepted: int = 0
    stores_refused: int = 0
    dup_stores: int = 0
    loads: int = 0
    loads_found: int = 0
    loads_absent: int = 0
    invalidates: int = 0
    invalidates_found: int = 0
    area_invalidates: int = 0
    area_invalidate_pages: int = 0
    shrinks: int = 0
    shrink_pages: int = 0
    pages: int = 0
    pages_peak: int = 0


CHUNK_BYTES = 4096
"""A bitmap chunk: 32,768 slots."""
_CHUNK_SHIFT = 15  # log2 of the slots in a chunk
_NONZERO = re.compile(rb"[^\x00]")


class _Area:
    """One swap area's bitmap: bit (offset & 7) of byte offset >> 3.

    Kept in chunks made when a slot in them is first used, so a huge area
    holding few pages costs little; `offsets` skips empty bytes at C
    speed.
    """

    __slots__ = ("chunks", "slots", "stored")

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.chunks: dict[int, bytearray] = {}
        self.stored = 0

    def test(self, offset: int) -> bool:
        chunk = self.chunks.get(offset >> _CHUNK_SHIFT)
        return chunk is not None and bool(
            chunk[(offset >> 3) % CHUNK_BYTES] >> (offset & 7) & 1)

    def set(self, offset: int) -> bool:
        """Set a bit; return whether it was clear."""
        key = offset >> _CHUNK_SHIFT
        chunk = self.chunks.get(key)
        if chunk is None:
            chunk = self.chunks[key] = bytearray(CHUNK_BYTES)
        byte, bit = (offset >> 3) % CHUNK_BYTES, 1 << (offset & 7)
        was_clear = not chunk[byte] & bit
        chunk[byte] |= bit
        self.stored += was_clear
        return was_clear

    def clear(self, offset: int) -> bool:
        """Clear a bit; return whether it was set."""
        chunk = self.chunks.get(offset >> _CHUNK_SHIFT)
        byte, bit = (offset >> 3) % CHUNK_BYTES, 1 << (offset & 7)
        if chunk is None or not chunk[byte] & bit:
            return False
        chunk[byte] &= ~bit & 0xFF
        self.stored -= 1
        return True

    def offsets(self) -> Iterator[int]:
        """The set bits, lowest offset first."""
        for key in sorted(self.chunks):
            base = key << _CHUNK_SHIFT
            for found in _NONZERO.finditer(self.chunks[key]):
                value = found.group()[0]
                while value:
                    low = value & -value
                    yield base + (found.start() << 3) + low.bit_length() - 1
                    value ^= low

    def bitmap(self) -> bytes:
        """The whole bitmap, unused chunks as zeros."""
        whole = bytearray((self.slots + 7) >> 3)
        for key, chunk in self.chunks.items():
            at = key * CHUNK_BYTES
            size = min(CHUNK_BYTES, len(whole) - at)
            whole[at:at + size] = chunk[:size]
        return bytes(whole)


def handle(area: int, offset: int) -> tuple[int, int]:
    """The (oid, index) a swap slot is kept under."""
    return (area << 4) | (offset & 15), offset >> 4


class Frontswap:
    """Swap areas kept in one persistent pool.

    Raises:
        InvalidArgument: the pool is not persistent.
    """

    def __init__(self, pool: PoolAPI) -> None:
        if not pool.persistent:
            raise InvalidArgument(
                f"pool {pool.pool_id} is ephemeral; frontswap needs a "
                "persistent pool")
        self._pool = pool
        self._lock = threading.Lock()
        self._areas: dict[int, _Area] = {}
        self._counts = _Counts()

    @classmethod
    def attach(cls, client: ClientAPI) -> Frontswap:
        """A Frontswap on a new private persistent pool of `client`."""
        return cls(client.new_pool(persistent=True))

    @property
    def pool(self) -> PoolAPI:
        return self._pool

    def __repr__(self) -> str:
        return (f"<Frontswap on pool {self._pool.pool_id}, "
                f"{len(self._areas)} areas>")

    # -- areas -------------------------------------------------------------

    def init_area(self, area: int, slots: int) -> None:
        """Turn on swap area `area` with `slots` slots (swapon).

        Raises:
            InvalidArgument: a bad area or size, or the area is on.
        """
        if type(area) is not int or not 0 <= area < MAX_AREAS:
            raise InvalidArgument(
                f"swap area {area!r} must be an int in 0..{MAX_AREAS - 1}")
        if type(slots) is not int or not 1 <= slots <= MAX_SLOTS:
            raise InvalidArgument(
                f"swap area size {slots!r} must be 1..{MAX_SLOTS} slots")
        with self._lock:
            if area in self._areas:
                raise InvalidArgument(
                    f"swap area {area} is already on; invalidate_area first")
            self._areas[area] = _Area(slots)

    def invalidate_area(self, area: int) -> int:
        """Turn an area off (swapoff): flush its pages and forget it;
        return how many pages were in tmem.

        Raises:
            InvalidArgument: the area is not on.
        """
        with self._lock:
            self._area(area)
        removed = sum(self._pool.flush_object((area << 4) | low)
                      for low in range(16))
        with self._lock:
            gone = self._areas.pop(area)
            counts = self._counts
            counts.pages -= gone.stored
            counts.area_invalidates += 1
            counts.area_invalidate_pages += removed
        return removed

    def areas(self) -> dict[int, int]:
        """The areas turned on, each with its size in slots."""
        with self._lock:
            return {area: a.slots for area, a in self._areas.items()}

    # -- the bitmap --------------------------------------------------------

    def is_stored(self, area: int, offset: int) -> bool:
        """Whether slot `offset` of `area` is in tmem."""
        with self._lock:
            return self._area(area, offset).test(offset)

    def stored(self, area: int | None = None) -> int:
        """Slots in tmem: of one area, or of all."""
        with self._lock:
            if area is None:
                return self._counts.pages
            return self._area(area).stored

    def bitmap(self, area: int) -> bytes:
        """A copy of the area's bitmap: slot i is bit (i & 7) of byte
        i >> 3."""
        with self._lock:
            return self._area(area).bitmap()

    # -- stores ------------------------------------------------------------

    def store(self, area: int, offset: int, page: bytes) -> bool:
        """Swap a page out to tmem; False means write it to the swap disk."""
        return self.store_many(((area, offset, page),))[0]

    def store_many(self, items: Iterable[tuple[int, int, bytes]]
                   ) -> list[bool]:
        """Store many pages with one pool call (two if some slots were
        already in tmem); results in order.

        Raises:
            InvalidArgument: a bad area, offset or page (nothing stored).
        """
        checked = self._check_stores(items)

        # drop old copies first: a refused store must leave none behind
        with self._lock:
            dups = [(area, offset) for area, offset, _ in checked
                    if self._areas[area].test(offset)]
        if dups:
            self._pool.flush_many([handle(*slot) for slot in dups])
            with self._lock:
                for area, offset in dups:
                    self._areas[area].clear(offset)

        # store, then record what was kept (the last store of a slot wins)
        results = self._pool.put_many(
            [(*handle(area, offset), page) for area, offset, page in checked])
        with self._lock:
            for (area, offset, _), kept in zip(checked, results, strict=True):
                if kept:
                    self._areas[area].set(offset)
                else:
                    self._areas[area].clear(offset)
            self._recount(stores=len(checked), dup_stores=len(dups),
                          stores_accepted=results.count(True),
                          stores_refused=results.count(False))
        return results

    def _check_stores(self, items: Iterable[tuple[int, int, bytes]]
                      ) -> list[tuple[int, int, bytes]]:
        checked = []
        with self._lock:
            for area, offset, page in items:
                self._area(area, offset)
                if type(page) is not bytes or len(page) != PAGE_SIZE:
                    page = check_page(page)
                checked.append((area, offset, page))
        return checked

    # -- loads -------------------------------------------------------------

    def load(self, area: int, offset: int) -> bytes | None:
        """Swap a page in: the page if tmem has it, else None."""
        return self.load_many(((area, offset),))[0]

    def load_many(self, items: Iterable[tuple[int, int]]
                  ) -> list[bytes | None]:
        """Load many slots with at most one pool call; results in order.

        Raises:
            InvalidArgument: a bad area or offset.
            CheckFailed: tmem lost a page it had accepted.
        """
        slots = self._check_slots(items)
        with self._lock:
            present = [self._areas[a].test(o) for a, o in slots]
        wanted = [handle(*slot) for slot, ok in zip(slots, present,
                                                    strict=True) if ok]
        found = iter(self._pool.get_many(wanted) if wanted else [])
        results = [next(found) if ok else None for ok in present]

        for slot, ok, page in zip(slots, present, results, strict=True):
            if ok and page is None:
                raise CheckFailed(
                    f"swap slot {slot[1]} of area {slot[0]} was stored in "
                    "tmem but its persistent pool no longer has it")
        with self._lock:
            self._recount(loads=len(slots), loads_found=len(wanted),
                          loads_absent=len(slots) - len(wanted))
        return results

    # -- invalidates -------------------------------------------------------

    def invalidate_page(self, area: int, offset: int) -> bool:
        """The slot was freed: drop it from tmem; return whether it was
        there."""
        return self.invalidate_many(((area, offset),))[0]

    def invalidate_many(self, items: Iterable[tuple[int, int]]
                        ) -> list[bool]:
        """Drop many freed slots with at most one pool call.

        Raises:
            InvalidArgument: a bad area or offset (nothing dropped).
        """
        slots = self._check_slots(items)
        with self._lock:
            present = [self._areas[a].clear(o) for a, o in slots]
        wanted = [handle(*slot) for slot, ok in zip(slots, present,
                                                    strict=True) if ok]
        if wanted:
            self._pool.flush_many(wanted)
        with self._lock:
            self._recount(invalidates=len(slots),
                          invalidates_found=len(wanted))
        return present

    # -- selfshrinking -----------------------------------------------------

    def shrink(self, target_pages: int) -> list[SwapPage]:
        """Take pages out of tmem until at most `target_pages` remain.

        Returns:
            The pages taken, each with its slot: the caller must write
            them to its swap disk, since tmem no longer has them.

        Raises:
            InvalidArgument: target_pages is not a non-negative int.
        """
        if type(target_pages) is not int or target_pages < 0:
            raise InvalidArgument(
                f"shrink target {target_pages!r} must be an int >= 0")
        with self._lock:
            excess = self._counts.pages - target_pages
            victims = self._pick(excess)
            self._counts.shrinks += 1

        taken: list[SwapPage] = []
        for start in range(0, len(victims), SHRINK_BATCH):
            taken += self._take(victims[start:start + SHRINK_BATCH])
        return taken

    def _pick(self, count: int) -> list[tuple[int, int]]:
        """Up to `count` slots in tmem, area by area, lowest first."""
        picked: list[tuple[int, int]] = []
        for area in sorted(self._areas):
            for offset in self._areas[area].offsets():
                if len(picked) >= count:
                    return picked
                picked.append((area, offset))
        return picked

    def _take(self, slots: Sequence[tuple[int, int]]) -> list[SwapPage]:
        """Get and flush a batch of slots; skip any freed meanwhile."""
        handles = [handle(*slot) for slot in slots]
        pages = self._pool.get_many(handles)
        self._pool.flush_many(handles)
        taken = []
        with self._lock:
            for (area, offset), page in zip(slots, pages, strict=True):
                a = self._areas.get(area)
                if page is None or a is None or not a.clear(offset):
                    continue
                taken.append(SwapPage(area, offset, page))
            self._recount(shrink_pages=len(taken))
        return taken

    # -- helpers -----------------------------------------------------------

    def _area(self, area: object, offset: object = 0) -> _Area:
        """The area, with `offset` checked against it (lock held)."""
        a = self._areas.get(area) if type(area) is int else None
        if a is None:
            raise InvalidArgument(
                f"swap area {area!r} is not on: call init_area first")
        if type(offset) is not int or not 0 <= offset < a.slots:
            raise InvalidArgument(
                f"swap offset {offset!r} is outside area {area}: it must "
                f"be in 0..{a.slots - 1}")
        return a

    def _check_slots(self, items: Iterable[tuple[int, int]]
                     ) -> list[tuple[int, int]]:
        slots = list(items)
        with self._lock:
            for area, offset in slots:
                self._area(area, offset)
        return slots

    def _recount(self, **changes: int) -> None:
        """Add to the counters and refresh pages and its peak (lock
        held)."""
        counts = self._counts
        for name, delta in changes.items():
            setattr(counts, name, getattr(counts, name) + delta)
        counts.pages = sum(a.stored for a in self._areas.values())
        counts.pages_peak = max(counts.pages_peak, counts.pages)

    def stats(self) -> FrontswapStats:
        """A frozen snapshot of the counters."""
        with self._lock:
            return FrontswapStats(**asdict(self._counts))
