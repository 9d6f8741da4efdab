"""Virtual disks whose blocks hold real pages, and the swap disk.

Compression and dedup figures only mean something on real data, so a
block's content is a page of this machine's files (`tmem.corpus`), never
zeros or random bytes.

Rules:
- A process loads one fixed slice of the corpus once (`corpus_slice`) and
  every disk draws on it.
- Block b of device d at version v holds corpus page
  mix(seed, d, b, v) mod the slice size: deterministic, and different
  for each disk seed.  A block never written is at version 0; each write
  that reaches the disk stores the version it carries.
- An anonymous page's content is drawn the same way from (seed, page,
  version), in a separate key space from blocks.
- The disks count their traffic: 512-byte sectors for the data disk,
  pages for the swap disk.  A page is always read or written whole.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from tmem import corpus
from tmem.engine.errors import InvalidArgument

SECTORS_PER_PAGE = 8
DEFAULT_CORPUS_PAGES = 20_000
# XXX(#4): a slice of 20k pages serves far more blocks than that, so equal
# pages repeat across blocks much more often than on a real disk: dedup
# savings measured on these disks overstate what real data would give.
_MASK64 = (1 << 64) - 1
_ANON = 0xA40A  # a device number no trace uses: keeps anon keys apart


def corpus_slice(pages: int = DEFAULT_CORPUS_PAGES) -> tuple[bytes, ...]:
    """The first `pages` real pages of the corpus, loaded once a process.

    Raises:
        InvalidArgument: pages < 1, or the machine has fewer files.
    """
    if type(pages) is not int or pages < 1:
        raise InvalidArgument(f"corpus slice {pages!r} must be >= 1 pages")
    loaded = _load(pages)
    if len(loaded) < pages:
        raise InvalidArgument(
            f"corpus slice of {pages} pages asked for, but this machine's "
            f"files give only {len(loaded)}")
    return loaded


@functools.lru_cache(maxsize=4)
def _load(pages: int) -> tuple[bytes, ...]:
    return tuple(corpus.pages(pages))


def mix(*words: int) -> int:
    """A 64-bit hash of some ints: the same on every run and every
    machine, unlike `hash()` of a tuple.  Words are folded in FNV style,
    then one splitmix64 finaliser spreads the bits (one finaliser, not
    one per word: this runs on every block a guest reads)."""
    state = 0xCBF29CE484222325
    for word in words:
        state = ((state ^ word) * 0x100000001B3) & _MASK64
    state = (state ^ state >> 30) * 0xBF58476D1CE4E5B9 & _MASK64
    state = (state ^ state >> 27) * 0x94D049BB133111EB & _MASK64
    return state ^ state >> 31


class VirtualDisk:
    """A guest's data disk: blocks of real content, with versions.

    Args:
        seed: makes this disk's contents differ from another's.
        pages: the corpus slice to draw on (or pass `contents`).
        contents: the pages to draw on, instead of the corpus slice.
    """

    def __init__(self, seed: int = 0, pages: int = DEFAULT_CORPUS_PAGES,
                 contents: Sequence[bytes] | None = None) -> None:
        self.seed = seed
        self._contents = corpus_slice(pages) if contents is None else \
            tuple(contents)
        if not self._contents:
            raise InvalidArgument("a virtual disk needs at least one page")
        self._versions: dict[tuple[int, int], int] = {}
        self.sectors_read = 0
        self.sectors_written = 0

    def __repr__(self) -> str:
        return (f"<VirtualDisk seed {self.seed}, {len(self._contents)} "
                f"distinct pages, {len(self._versions)} blocks written>")

    def version(self, device: int, block: int) -> int:
        """The version of the block on disk (0 if never written)."""
        return self._versions.get((device, block), 0)

    def content(self, device: int, block: int, version: int) -> bytes:
        """What block `block` of `device` holds at `version`."""
        pick = mix(self.seed, device, block, version)
        return self._contents[pick % len(self._contents)]

    def anon_content(self, page: int, version: int) -> bytes:
        """What anonymous page `page` holds at `version`."""
        pick = mix(self.seed, _ANON, page, version)
        return self._contents[pick % len(self._contents)]

    def read(self, device: int, block: int) -> bytes:
        """Read a block (counted); return its content on disk."""
        self.sectors_read += SECTORS_PER_PAGE
        return self.content(device, block, self.version(device, block))

    def write(self, device: int, block: int, version: int) -> None:
        """Write a block's page at `version` (counted)."""
        self.sectors_written += SECTORS_PER_PAGE
        self._versions[device, block] = version


class SwapDisk:
    """A swap area on disk: which anonymous page version each slot holds.

    Only the identity of the page is kept; its bytes follow from the data
    disk's `anon_content`, so a swap disk costs no page memory.
    """

    def __init__(self, slots: int) -> None:
        if type(slots) is not int or slots < 1:
            raise InvalidArgument(f"swap size {slots!r} must be >= 1 slots")
        self.slots = slots
        self._held: dict[int, tuple[int, int]] = {}
        self.reads = 0
        self.writes = 0

    def write(self, slot: int, page: int, version: int) -> None:
        """Write an anonymous page to a slot (one page, counted)."""
        self.writes += 1
        self._held[slot] = (page, version)

    def read(self, slot: int) -> tuple[int, int]:
        """Read a slot (counted); return the (page, version) it holds.

        Raises:
            InvalidArgument: nothing was ever written to the slot.
        """
        self.reads += 1
        held = self._held.get(slot)
        if held is None:
            raise InvalidArgument(
                f"swap slot {slot} was never written; a guest read it "
                "before swapping anything out to it")
        return held

    def forget(self, slot: int) -> None:
        """The slot was freed; its old contents no longer matter."""
        self._held.pop(slot, None)
