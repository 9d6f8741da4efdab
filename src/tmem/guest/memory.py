"""A guest kernel's memory manager in miniature, with tmem's hooks.

The guest owns `frames` page frames of RAM; selfballooning may lend some
back (`target` is what it holds now).  Every resident page holds a frame:
page-cache pages of its virtual disk, and anonymous pages of its programs.

Rules:
- Page cache.  A read of a block that is not resident is a page-cache
  miss: cleancache is asked first (one get_many for a request's missing
  blocks), then the disk (8 sectors a block).  A write dirties the page;
  a write that covers only part of a block that is not resident reads the
  block first, as the kernel does.  Overwriting a block that is not
  resident drops its copy in cleancache; a resident block has none, since
  the guest's filesystem is local (a private pool, whose gets take the
  page out).  Dirty pages reach the disk when they are reclaimed or at
  `sync`.
- Anonymous memory.  A page's first touch gives it real content (as if
  the program had loaded it), a write changes its content.  Swapping out
  tries frontswap first (one store_many per reclaim batch), else the swap
  disk; swapping in loads from frontswap or reads the swap disk.  A page
  swapped in keeps its slot while it stays clean (the swap cache), so
  reclaiming it again costs nothing; writing it or freeing it frees the
  slot, which invalidates its frontswap copy.
- Reclaim.  When a fault needs frames and none are free, RECLAIM_BATCH
  pages (the kernel's SWAP_CLUSTER_MAX) go at once, from the cold ends of
  two LRU lists, file and anon.  The next victim is the oldest anon page
  when anon_age * swappiness > file_age * (200 - swappiness), else the
  oldest file page; ages count accesses since the page was last used.
  So swappiness 100 is one global LRU, 0 spares anon pages while file
  pages remain, 200 spares file pages.  Clean file pages go to cleancache
  (one put_many per batch); dirty ones are written back first.
- Requests are handled CHUNK blocks at a time, so a frame taken for a
  request is never reclaimed before that chunk is done with it.
- Every page that comes back from tmem is compared with what the disk
  says it must hold; a mismatch is counted in `stale_pages`, which a
  coherent stack keeps at zero.

A guest is a tmem client: it takes a `ClientAPI` (embedded, or a daemon
connection) or None, for a guest without tmem.  It is not thread-safe: one
guest is driven by one thread, as its runner does.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

from tmem.engine.api import ClientAPI
from tmem.engine.errors import InvalidArgument, LimitExceeded
from tmem.frontends.cleancache import Cleancache, inode_key
from tmem.frontends.frontswap import Frontswap
from tmem.guest.balloon import SelfBalloon, SelfShrink, ShrinkState
from tmem.guest.disk import SwapDisk, VirtualDisk

RECLAIM_BATCH = 32
CHUNK = 16
MIN_FRAMES = 2 * CHUNK
BLOCK_BITS = 40
BLOCK_LIMIT = 1 << BLOCK_BITS
SWAP_AREA = 0


@dataclass(frozen=True)
class GuestCounters:
    """What a guest did, as one frozen, JSON-ready snapshot."""

    read_requests: int = 0
    write_requests: int = 0
    anon_touches: int = 0
    """Anonymous page references (memory traces)."""
    blocks_read: int = 0
    """Blocks the read requests covered."""
    blocks_written: int = 0
    page_cache_hits: int = 0
    """Blocks of read requests found in RAM."""
    page_cache_misses: int = 0
    """Blocks brought into RAM (reads, and partial writes of absent
    blocks): from cleancache or from the disk."""
    disk_sectors_read: int = 0
    disk_sectors_written: int = 0
    writebacks: int = 0
    """Dirty file pages written to disk (reclaim or sync)."""
    swap_reads: int = 0
    """Pages read from the swap disk."""
    swap_writes: int = 0
    """Pages written to the swap disk."""
    anon_first_touches: int = 0
    anon_faults: int = 0
    """Touches of anonymous pages that were swapped out."""
    cleancache_gets: int = 0
    cleancache_hits: int = 0
    cleancache_puts: int = 0
    cleancache_puts_stored: int = 0
    cleancache_invalidates: int = 0
    frontswap_stores: int = 0
    frontswap_accepted: int = 0
    frontswap_loads: int = 0
    """Swap-ins served from frontswap."""
    frontswap_invalidates: int = 0
    frontswap_pages: int = 0
    """Slots in frontswap now."""
    selfshrink_pages: int = 0
    """Pages selfshrinking moved from frontswap to the swap disk."""
    reclaims: int = 0
    """Pages reclaimed (file and anon)."""
    reclaims_file: int = 0
    reclaims_anon: int = 0
    stale_pages: int = 0
    """Pages from tmem that did not hold what they must: always 0."""
    frames: int = 0
    """RAM frames the guest was given."""
    target_frames: int = 0
    """Frames it holds now (below `frames` when ballooned down)."""
    target_frames_low: int = 0
    """Fewest frames it has held."""
    resident_file: int = 0
    resident_anon: int = 0
    committed: int = 0
    """Anonymous pages in use, resident or swapped."""
    balloon_moves: int = 0
    """Ticks on which selfballooning changed the target."""
    wall_s: float = 0.0
    """Wall-clock seconds spent in this guest's work."""
    cpu_s: float = 0.0
    """Process CPU seconds spent in this guest's work."""

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass
class _Counts:
    """The guest's own live counters (disks and frontends keep theirs)."""

    read_requests: int = 0
    write_requests: int = 0
    anon_touches: int = 0
    blocks_read: int = 0
    blocks_written: int = 0
    page_cache_hits: int = 0
    page_cache_misses: int = 0
    writebacks: int = 0
    anon_first_touches: int = 0
    anon_faults: int = 0
    selfshrink_pages: int = 0
    reclaims_file: int = 0
    reclaims_anon: int = 0
    stale_pages: int = 0
    balloon_moves: int = 0
    target_frames_low: int = 0


class _FilePage:
    """A resident page-cache page."""

    __slots__ = ("dirty", "tick", "version")

    def __init__(self, version: int, dirty: bool, tick: int) -> None:
        self.version = version
        self.dirty = dirty
        self.tick = tick


class _AnonPage:
    """An anonymous page, resident or swapped out to `slot`."""

    __slots__ = ("dirty", "slot", "tick", "version")

    def __init__(self, version: int, tick: int) -> None:
        self.version = version
        self.dirty = True
        self.tick = tick
        self.slot: int | None = None


class Guest:
    """A guest's memory manager.

    Args:
        name: for counters and tmem's client list.
        frames: RAM page frames (at least MIN_FRAMES).
        client: the tmem client, or None for a guest without tmem.
        disk: its virtual data disk (default: seed 0).
        swap_slots: size of its swap area in pages.
        swappiness: 0..200, see the module's reclaim rule.
        cleancache, frontswap: use each hook (only with a client).
        balloon: selfballooning policy, or None to keep `frames`.
        selfshrink: frontswap selfshrinking policy, or None.
    """

    def __init__(self, name: str, frames: int, client: ClientAPI | None,
                 *, disk: VirtualDisk | None = None,
                 swap_slots: int = 1 << 16, swappiness: int = 60,
                 cleancache: bool = True, frontswap: bool = True,
                 balloon: SelfBalloon | None = None,
                 selfshrink: SelfShrink | None = None) -> None:
        if type(frames) is not int or frames < MIN_FRAMES:
            raise InvalidArgument(
                f"guest frames {frames!r} must be an int >= {MIN_FRAMES}")
        if type(swappiness) is not int or not 0 <= swappiness <= 200:
            raise InvalidArgument(
                f"swappiness {swappiness!r} must be an int in 0..200")
        self.name = name
        self.frames = self.target = frames
        self.swappiness = swappiness
        self.disk = disk if disk is not None else VirtualDisk()
        self.swap = SwapDisk(swap_slots)
        self.balloon = balloon
        self._shrink = None if selfshrink is None else ShrinkState(selfshrink)

        self.cleancache: Cleancache | None = None
        self.frontswap: Frontswap | None = None
        if client is not None and cleancache:
            self.cleancache = Cleancache.mount(client)
        if client is not None and frontswap:
            self.frontswap = Frontswap.attach(client)
            self.frontswap.init_area(SWAP_AREA, swap_slots)

        self._file: OrderedDict[int, _FilePage] = OrderedDict()
        self._anon: OrderedDict[int, _AnonPage] = OrderedDict()
        self._swapped: dict[int, _AnonPage] = {}
        self._slot_owner: dict[int, int] = {}
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._devices: dict[int | str, int] = {}
        self._file_keys: dict[int, int] = {}
        self._next_device = 0
        self._tick = 0
        self._counts = _Counts(target_frames_low=frames)
        self.wall_s = self.cpu_s = 0.0

    def __repr__(self) -> str:
        return (f"<Guest {self.name!r}: {self.resident}/{self.target} "
                f"frames in use>")

    @property
    def resident(self) -> int:
        """Frames holding pages now."""
        return len(self._file) + len(self._anon)

    @property
    def committed(self) -> int:
        """Anonymous pages in use, resident or swapped out."""
        return len(self._anon) + len(self._swapped)

    # -- the page cache ----------------------------------------------------

    def read(self, device: int | str, block: int, count: int = 1) -> None:
        """Read `count` blocks of a device, starting at `block`."""
        dev = self._device(device)
        _check_blocks(block, count)
        self._counts.read_requests += 1
        for start in range(block, block + count, CHUNK):
            self._read_chunk(dev, start, min(CHUNK, block + count - start))

    def _read_chunk(self, dev: int, first: int, count: int) -> None:
        self._tick += 1
        tick = self._tick
        lru = self._file
        base = dev << BLOCK_BITS

        # hits are touched; misses are faulted in together
        missing = []
        for block in range(first, first + count):
            page = lru.get(base | block)
            if page is None:
                missing.append(block)
            else:
                page.tick = tick
                lru.move_to_end(base | block)
        counts = self._counts
        counts.blocks_read += count
        counts.page_cache_hits += count - len(missing)
        if missing:
            self._make_room(len(missing))
            self._fault_in(dev, missing, tick)

    def _fault_in(self, dev: int, blocks: list[int], tick: int) -> None:
        """Bring absent blocks in: cleancache first, then the disk.  The
        caller has made room for them."""
        self._counts.page_cache_misses += len(blocks)
        found: list[bytes | None] = [None] * len(blocks)
        if self.cleancache is not None:
            key = self._file_key(dev)
            found = self.cleancache.get_many([(key, b) for b in blocks])

        disk, base = self.disk, dev << BLOCK_BITS
        for block, page in zip(blocks, found, strict=True):
            version = disk.version(dev, block)
            if page is None:
                disk.read(dev, block)
            elif page != disk.content(dev, block, version):
                self._counts.stale_pages += 1
            self._file[base | block] = _FilePage(version, False, tick)

    def write(self, device: int | str, block: int, count: int = 1, *,
              partial_first: bool = False, partial_last: bool = False
              ) -> None:
        """Write `count` blocks; `partial_first` / `partial_last` say the
        write covers only part of the first / last block."""
        dev = self._device(device)
        _check_blocks(block, count)
        self._counts.write_requests += 1
        end = block + count
        for start in range(block, end, CHUNK):
            stop = min(start + CHUNK, end)
            self._write_chunk(dev, start, stop - start,
                              partial_first and start == block,
                              partial_last and stop == end)

    def _write_chunk(self, dev: int, first: int, count: int,
                     partial_first: bool, partial_last: bool) -> None:
        self._tick += 1
        tick = self._tick
        lru, base = self._file, dev << BLOCK_BITS
        self._counts.blocks_written += count

        # sort blocks: resident, absent and overwritten, absent and partial
        overwritten, partial = [], []
        for block in range(first, first + count):
            page = lru.get(base | block)
            if page is not None:
                page.tick = tick
                lru.move_to_end(base | block)
            elif (block == first and partial_first) or \
                    (block == first + count - 1 and partial_last):
                partial.append(block)
            else:
                overwritten.append(block)

        # room for the absent blocks; partial ones are read first
        if partial or overwritten:
            self._make_room(len(partial) + len(overwritten))
        if partial:
            self._fault_in(dev, partial, tick)
        for block in overwritten:
            lru[base | block] = _FilePage(self.disk.version(dev, block),
                                          False, tick)
        self._drop_copies(dev, overwritten)

        # the data changes
        for block in range(first, first + count):
            page = lru[base | block]
            page.version += 1
            page.dirty = True

    def _drop_copies(self, dev: int, blocks: list[int]) -> None:
        if blocks and self.cleancache is not None:
            key = self._file_key(dev)
            self.cleancache.invalidate_many([(key, b) for b in blocks])

    def discard(self, device: int | str) -> int:
        """Throw a device's contents away (a file deleted, a volume
        trimmed): its pages leave RAM unwritten, its cleancache object is
        invalidated, and later reads see new contents.  Returns the pages
        dropped from RAM."""
        dev = self._device(device)
        base, mask = dev << BLOCK_BITS, ~(BLOCK_LIMIT - 1)
        doomed = [k for k in self._file if k & mask == base]
        for key in doomed:
            del self._file[key]
        if self.cleancache is not None:
            self.cleancache.invalidate_inode(self._file_key(dev))
        self._devices[device] = self._new_device()
        return len(doomed)

    def sync(self) -> int:
        """Write every dirty file page to disk; return how many."""
        # XXX(#4): there is no periodic writeback (the kernel's 30 s
        # dirty_expire), so writes reach the disk later than a kernel's
        # would; the number of sectors written is the same.
        written = 0
        for key, page in self._file.items():
            if page.dirty:
                self.disk.write(key >> BLOCK_BITS, key & (BLOCK_LIMIT - 1),
                                page.version)
                page.dirty = False
                written += 1
        self._counts.writebacks += written
        return written

    # -- anonymous memory --------------------------------------------------

    def touch(self, page: int, write: bool = False) -> None:
        """A program reads (or writes) anonymous page `page`."""
        self._counts.anon_touches += 1
        self._tick += 1
        held = self._anon.get(page)
        if held is None:
            self._anon_fault(page)
            held = self._anon[page]
        else:
            held.tick = self._tick
            self._anon.move_to_end(page)
        if write and not held.dirty:
            self._dirty(held)

    def _anon_fault(self, page: int) -> None:
        self._make_room(1)
        held = self._swapped.pop(page, None)
        if held is None:
            held = _AnonPage(0, self._tick)
            self._counts.anon_first_touches += 1
        else:
            self._swap_in(page, held)
            held.tick = self._tick
        self._anon[page] = held

    def _swap_in(self, page: int, held: _AnonPage) -> None:
        slot = held.slot
        assert slot is not None
        self._counts.anon_faults += 1
        data = None
        if self.frontswap is not None:
            data = self.frontswap.load(SWAP_AREA, slot)
        if data is None:
            owner, version = self.swap.read(slot)
            if (owner, version) != (page, held.version):
                self._counts.stale_pages += 1
        elif data != self.disk.anon_content(page, held.version):
            self._counts.stale_pages += 1
        held.dirty = False

    def _dirty(self, held: _AnonPage) -> None:
        """A clean page is written: new content, and its slot is stale."""
        held.dirty = True
        held.version += 1
        if held.slot is not None:
            self._free_slot(held.slot)
            held.slot = None

    def holds_anon(self, page: int) -> bool:
        """Whether anonymous page `page` is in use (in RAM or swapped)."""
        return page in self._anon or page in self._swapped

    def free(self, page: int) -> None:
        """A program frees anonymous page `page` (its frame or slot)."""
        held = self._anon.pop(page, None) or self._swapped.pop(page, None)
        if held is None:
            raise InvalidArgument(
                f"anonymous page {page!r} is not in use by guest "
                f"{self.name!r}")
        if held.slot is not None:
            self._free_slot(held.slot)

    # -- reclaim -----------------------------------------------------------

    def _make_room(self, needed: int) -> None:
        short = self.resident + needed - self.target
        if short > 0:
            self._reclaim(max(short, RECLAIM_BATCH), short)

    def _reclaim(self, wanted: int, needed: int) -> None:
        """Reclaim up to `wanted` pages, at least `needed`."""
        file_victims: list[tuple[int, _FilePage]] = []
        anon_victims: list[tuple[int, _AnonPage]] = []
        slots = self.swap.slots - self._next_slot + len(self._free_slots)
        while len(file_victims) + len(anon_victims) < wanted:
            take_anon = self._prefer_anon(slots > 0)
            if take_anon is None:
                break
            if take_anon:
                page, held = self._anon.popitem(last=False)
                anon_victims.append((page, held))
                slots -= held.slot is None or held.dirty
            else:
                file_victims.append(self._file.popitem(last=False))
        self._evict_file(file_victims)
        self._evict_anon(anon_victims)

        freed = len(file_victims) + len(anon_victims)
        if freed < needed:
            raise LimitExceeded(
                f"guest {self.name!r} is out of memory: {self.resident} "
                f"frames in use of {self.target} and its swap area of "
                f"{self.swap.slots} slots is full")

    def _prefer_anon(self, may_swap: bool) -> bool | None:
        """Whether the next victim is anon (None: nothing to take)."""
        file_head = next(iter(self._file.values()), None)
        anon_head = next(iter(self._anon.values()), None)
        if anon_head is not None and not may_swap and \
                (anon_head.slot is None or anon_head.dirty):
            anon_head = None
        if anon_head is None:
            return None if file_head is None else False
        if file_head is None:
            return True
        anon_age = self._tick - anon_head.tick + 1
        file_age = self._tick - file_head.tick + 1
        return anon_age * self.swappiness > \
            file_age * (200 - self.swappiness)

    def _evict_file(self, victims: list[tuple[int, _FilePage]]) -> None:
        if not victims:
            return
        self._counts.reclaims_file += len(victims)
        disk, puts = self.disk, []
        for key, page in victims:
            dev, block = key >> BLOCK_BITS, key & (BLOCK_LIMIT - 1)
            if page.dirty:
                disk.write(dev, block, page.version)
                self._counts.writebacks += 1
            if self.cleancache is not None:
                puts.append((self._file_key(dev), block,
                             disk.content(dev, block, page.version)))
        if self.cleancache is not None:
            self.cleancache.put_many(puts)

    def _evict_anon(self, victims: list[tuple[int, _AnonPage]]) -> None:
        if not victims:
            return
        self._counts.reclaims_anon += len(victims)

        # clean pages in the swap cache just leave; the rest need slots
        outgoing: list[tuple[int, int, int]] = []  # page, slot, version
        for page, held in victims:
            self._swapped[page] = held
            if held.slot is None or held.dirty:
                if held.slot is None:
                    held.slot = self._alloc_slot(page)
                held.dirty = False
                outgoing.append((page, held.slot, held.version))

        # frontswap first, the swap disk for what it refuses
        kept = [False] * len(outgoing)
        if self.frontswap is not None and outgoing:
            kept = self.frontswap.store_many(
                [(SWAP_AREA, slot, self.disk.anon_content(page, version))
                 for page, slot, version in outgoing])
        for (page, slot, version), stored in zip(outgoing, kept,
                                                 strict=True):
            if not stored:
                self.swap.write(slot, page, version)

    def _alloc_slot(self, page: int) -> int:
        if self._free_slots:
            slot = self._free_slots.pop()
        else:
            slot = self._next_slot
            self._next_slot += 1
        self._slot_owner[slot] = page
        return slot

    def _free_slot(self, slot: int) -> None:
        del self._slot_owner[slot]
        self.swap.forget(slot)
        if self.frontswap is not None:
            self.frontswap.invalidate_page(SWAP_AREA, slot)
        self._free_slots.append(slot)

    # -- selfballooning and selfshrinking ----------------------------------

    def tick(self) -> None:
        """One tick of the guest's housekeeping: selfballoon, then
        selfshrink (each if configured)."""
        if self.balloon is not None:
            self._selfballoon(self.balloon)
        if self._shrink is not None and self.frontswap is not None:
            self._selfshrink(self._shrink, self.frontswap)

    def _selfballoon(self, balloon: SelfBalloon) -> None:
        target = balloon.target(self.committed, self.target, self.frames)
        if target == self.target:
            return
        self._counts.balloon_moves += 1
        excess = self.resident - target
        if excess > 0:
            self._reclaim(excess, 0)
        self.target = max(target, self.resident)  # swap may be full
        self._counts.target_frames_low = min(
            self._counts.target_frames_low, self.target)

    def _selfshrink(self, state: ShrinkState, frontswap: Frontswap) -> None:
        keep = state.target(frontswap.stored(SWAP_AREA))
        if keep is None:
            return
        for taken in frontswap.shrink(keep):
            page = self._slot_owner[taken.offset]
            held = self._swapped.get(page) or self._anon[page]
            if taken.page != self.disk.anon_content(page, held.version):
                self._counts.stale_pages += 1
            self.swap.write(taken.offset, page, held.version)
            self._counts.selfshrink_pages += 1

    # -- counters and teardown ---------------------------------------------

    def counters(self) -> GuestCounters:
        """A snapshot of every counter, the frontends' included."""
        values = asdict(self._counts)
        values.update(
            disk_sectors_read=self.disk.sectors_read,
            disk_sectors_written=self.disk.sectors_written,
            swap_reads=self.swap.reads, swap_writes=self.swap.writes,
            reclaims=values["reclaims_file"] + values["reclaims_anon"],
            frames=self.frames, target_frames=self.target,
            resident_file=len(self._file), resident_anon=len(self._anon),
            committed=self.committed, wall_s=self.wall_s, cpu_s=self.cpu_s)
        if self.cleancache is not None:
            cc = self.cleancache.stats()
            values.update(
                cleancache_gets=cc.gets, cleancache_hits=cc.hits,
                cleancache_puts=cc.puts, cleancache_puts_stored=cc.puts_stored,
                cleancache_invalidates=cc.invalidate_pages)
        if self.frontswap is not None:
            fs = self.frontswap.stats()
            values.update(
                frontswap_stores=fs.stores,
                frontswap_accepted=fs.stores_accepted,
                frontswap_loads=fs.loads_found,
                frontswap_invalidates=fs.invalidates_found,
                frontswap_pages=fs.pages)
        return GuestCounters(**values)

    def close(self) -> None:
        """Unmount cleancache and turn the swap area off in tmem."""
        if self.cleancache is not None:
            self.cleancache.invalidate_fs()
        if self.frontswap is not None and \
                SWAP_AREA in self.frontswap.areas():
            self.frontswap.invalidate_area(SWAP_AREA)

    # -- helpers -----------------------------------------------------------

    def _device(self, device: int | str) -> int:
        dev = self._devices.get(device)
        if dev is None:
            if not isinstance(device, int | str) or isinstance(device, bool):
                raise InvalidArgument(
                    f"device {device!r} must be an int or a str")
            dev = self._devices[device] = self._new_device()
        return dev

    def _new_device(self) -> int:
        self._next_device += 1
        return self._next_device - 1

    def _file_key(self, dev: int) -> int:
        """The cleancache key of a device: the bdev inode's identity."""
        key = self._file_keys.get(dev)
        if key is None:
            key = self._file_keys[dev] = inode_key(dev)
        return key


def _check_blocks(block: object, count: object) -> None:
    if type(block) is not int or not 0 <= block < BLOCK_LIMIT:
        raise InvalidArgument(
            f"block {block!r} must be an int in [0, 2**{BLOCK_BITS})")
    if type(count) is not int or count < 1 or block + count > BLOCK_LIMIT:
        raise InvalidArgument(
            f"block count {count!r} must be >= 1 and end below "
            f"2**{BLOCK_BITS}")

