"""Frontswap: slot mapping, refusals, loads, invalidation, the bitmap and
selfshrinking."""

from __future__ import annotations

import lz4.frame
import pytest

import tmem
from tmem import CheckFailed, InvalidArgument
from tmem.frontends import Frontswap, SwapPage
from tmem.frontends.frontswap import MAX_SLOTS, handle


@pytest.fixture
def swap(host: tmem.Host) -> Frontswap:
    frontswap = Frontswap.attach(host.client("guest"))
    frontswap.init_area(0, 1024)
    return frontswap


def test_a_stored_page_loads_until_invalidated(swap: Frontswap,
                                               pages: list[bytes]) -> None:
    assert swap.store(0, 37, pages[0])
    assert swap.load(0, 37) == pages[0]
    assert swap.load(0, 37) == pages[0]  # persistent: loads keep it
    assert swap.invalidate_page(0, 37) is True
    assert swap.load(0, 37) is None
    assert swap.invalidate_page(0, 37) is False


def test_slots_follow_the_original_mapping(swap: Frontswap,
                                           pages: list[bytes]) -> None:
    swap.init_area(3, 100)
    swap.store(3, 37, pages[0])
    assert handle(3, 37) == ((3 << 4) | 5, 2)
    assert swap.pool.get((3 << 4) | 5, 2) == pages[0]


def test_a_slot_not_in_tmem_loads_without_a_pool_call(
        swap: Frontswap) -> None:
    assert swap.load_many([(0, 1), (0, 2)]) == [None, None]
    assert swap.pool.stats().ops.gets == 0
    assert swap.stats().loads_absent == 2


def test_refused_stores_go_to_disk_and_load_as_absent(
        pages: list[bytes]) -> None:
    host = tmem.Host(capacity=3 * 4400, compress="none")
    swap = Frontswap.attach(host.client("guest"))
    swap.init_area(0, 64)
    results = swap.store_many([(0, i, pages[i]) for i in range(6)])
    assert results == [True, True, True, False, False, False]
    assert swap.load_many([(0, i) for i in range(6)]) == \
        [*pages[:3], None, None, None]
    assert swap.stored() == 3
    assert swap.stats().stores_refused == 3
    host.check()


def test_a_refused_restore_leaves_no_stale_copy(pages: list[bytes]) -> None:
    # A page that compresses well is stored; the host is then filled by
    # someone else; restoring the slot with a page that does not compress
    # is refused, and the old page must not be loadable.
    def size(page: bytes) -> int:
        return len(lz4.frame.compress(page))
    small = min(pages, key=size)
    large = max(pages, key=size)
    host = tmem.Host(capacity=size(small) + 600, compress="lz4")
    swap = Frontswap.attach(host.client("guest"))
    swap.init_area(0, 8)
    assert swap.store(0, 5, small)
    assert swap.store(0, 5, large) is False
    assert swap.load(0, 5) is None
    assert not swap.is_stored(0, 5)
    assert swap.pool.stats().content.pages == 0
    assert swap.stats().dup_stores == 1
    host.check()


def test_a_store_after_a_refusal_succeeds_once_there_is_room(
        pages: list[bytes]) -> None:
    host = tmem.Host(capacity=4400, compress="none")
    swap = Frontswap.attach(host.client("guest"))
    swap.init_area(0, 8)
    assert swap.store(0, 0, pages[0])
    assert swap.store(0, 1, pages[1]) is False
    swap.invalidate_page(0, 0)
    assert swap.store(0, 1, pages[1])
    assert swap.load(0, 1) == pages[1]


def test_the_bitmap_marks_exactly_the_slots_in_tmem(
        swap: Frontswap, pages: list[bytes]) -> None:
    swap.store_many([(0, o, pages[o % 512]) for o in (0, 9, 15, 16, 1023)])
    swap.invalidate_page(0, 15)
    bits = swap.bitmap(0)
    assert len(bits) == 128
    marked = [i for i in range(1024) if bits[i >> 3] >> (i & 7) & 1]
    assert marked == [0, 9, 16, 1023]
    assert [swap.is_stored(0, o) for o in (9, 15)] == [True, False]
    assert swap.stored(0) == 4


def test_a_huge_area_costs_only_the_chunks_it_uses(
        swap: Frontswap, pages: list[bytes]) -> None:
    swap.init_area(1, MAX_SLOTS)  # 2**36 slots: 8 GiB as a flat bitmap
    slots = [0, 77, MAX_SLOTS // 2, MAX_SLOTS - 1]
    swap.store_many([(1, o, pages[n]) for n, o in enumerate(slots)])
    assert len(swap._areas[1].chunks) == 3
    assert [swap.is_stored(1, o) for o in (77, 78, MAX_SLOTS - 1)] == [
        True, False, True]
    taken = swap.shrink(0)  # finds the last slot without a byte-by-byte walk
    assert [t.offset for t in taken] == slots
    assert swap.stored() == 0


def test_invalidate_area_empties_that_area_only(swap: Frontswap,
                                                pages: list[bytes]) -> None:
    swap.init_area(1, 64)
    swap.store_many([(0, o, pages[o]) for o in range(40)])
    swap.store_many([(1, o, pages[o]) for o in range(10)])
    assert swap.invalidate_area(0) == 40
    assert swap.areas() == {1: 64}
    assert swap.load(1, 9) == pages[9]
    assert swap.stored() == 10
    swap.init_area(0, 8)  # swapon again
    assert swap.load(0, 3) is None


def test_shrink_hands_back_pages_until_the_target(
        swap: Frontswap, pages: list[bytes]) -> None:
    swap.store_many([(0, o, pages[o]) for o in range(100)])
    taken = swap.shrink(30)
    assert len(taken) == 70
    assert all(t == SwapPage(0, t.offset, pages[t.offset]) for t in taken)
    assert swap.stored() == 30
    assert swap.pool.stats().content.pages == 30
    assert all(swap.load(0, t.offset) is None for t in taken)
    assert swap.shrink(50) == []
    assert swap.stats().shrink_pages == 70


def test_duplicate_slots_in_one_batch_keep_the_last_page(
        swap: Frontswap, pages: list[bytes]) -> None:
    swap.store_many([(0, 4, pages[0]), (0, 4, pages[1])])
    assert swap.load(0, 4) == pages[1]
    assert swap.stored() == 1


@pytest.mark.parametrize(("item", "message"), [
    ((1, 0), "swap area 1 is not on"),
    ((0, 1024), "swap offset 1024 is outside area 0"),
    ((0, -1), "swap offset -1 is outside area 0"),
    (("0", 0), "swap area '0' is not on"),
])
def test_bad_slots_change_nothing(swap: Frontswap, pages: list[bytes],
                                  item: tuple[object, object],
                                  message: str) -> None:
    area, offset = item
    with pytest.raises(InvalidArgument, match=message) as caught:
        swap.store_many([(0, 0, pages[0]),
                         (area, offset, pages[1])])  # type: ignore[list-item]
    assert "\n" not in str(caught.value)
    with pytest.raises(InvalidArgument, match=message):
        swap.invalidate_many([(0, 0), (area, offset)])  # type: ignore
    assert swap.stored() == 0
    assert swap.pool.stats().ops.puts == 0


def test_bad_pages_and_sizes_are_refused(swap: Frontswap) -> None:
    with pytest.raises(InvalidArgument, match="page length 3"):
        swap.store(0, 0, b"abc")
    with pytest.raises(InvalidArgument, match="already on"):
        swap.init_area(0, 10)
    with pytest.raises(InvalidArgument, match=r"must be an int in 0\.\.31"):
        swap.init_area(32, 10)
    with pytest.raises(InvalidArgument, match="size 0 must be"):
        swap.init_area(2, 0)
    with pytest.raises(InvalidArgument, match="shrink target -1"):
        swap.shrink(-1)
    with pytest.raises(InvalidArgument, match="area 5 is not on"):
        swap.invalidate_area(5)


def test_a_lost_persistent_page_is_a_failed_check(swap: Frontswap,
                                                  pages: list[bytes]) -> None:
    swap.store(0, 3, pages[0])
    swap.pool.flush_page(*handle(0, 3))  # behind the frontend's back
    with pytest.raises(CheckFailed, match="swap slot 3 of area 0"):
        swap.load(0, 3)


def test_an_ephemeral_pool_is_refused(host: tmem.Host) -> None:
    with pytest.raises(InvalidArgument, match="is ephemeral"):
        Frontswap(host.client("guest").new_pool())
