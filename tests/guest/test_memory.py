"""The guest's memory manager: page cache, anonymous memory, reclaim,
tmem hooks, selfballooning and selfshrinking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tmem
from tmem import InvalidArgument, LimitExceeded
from tmem.guest.balloon import SelfBalloon, SelfShrink
from tmem.guest.disk import VirtualDisk
from tmem.guest.memory import MIN_FRAMES, RECLAIM_BATCH, Guest


@pytest.fixture
def disk(pages: list[bytes]) -> VirtualDisk:
    return VirtualDisk(seed=1, contents=pages)


def _guest(disk: VirtualDisk, host: tmem.Host | None = None,
           frames: int = MIN_FRAMES, **options: object) -> Guest:
    client = None if host is None else host.client("guest")
    return Guest("guest", frames, client, disk=disk,
                 **options)  # type: ignore[arg-type]


# -- the page cache -------------------------------------------------------

def test_a_second_read_hits_the_page_cache(disk: VirtualDisk) -> None:
    guest = _guest(disk)
    guest.read("sda", 10, 4)
    guest.read("sda", 10, 4)
    c = guest.counters()
    assert (c.page_cache_misses, c.page_cache_hits) == (4, 4)
    assert c.disk_sectors_read == 4 * 8


def test_without_tmem_a_reclaimed_block_is_read_from_disk_again(
        disk: VirtualDisk) -> None:
    guest = _guest(disk)
    guest.read(0, 0, MIN_FRAMES)
    guest.read(0, 1000, RECLAIM_BATCH)  # pushes the first blocks out
    guest.read(0, 0, 4)
    assert guest.counters().disk_sectors_read == \
        (MIN_FRAMES + RECLAIM_BATCH + 4) * 8


def test_with_cleancache_a_reclaimed_block_comes_back_from_tmem(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host)
    guest.read(0, 0, MIN_FRAMES)
    guest.read(0, 1000, RECLAIM_BATCH)
    guest.read(0, 0, 4)
    c = guest.counters()
    assert c.disk_sectors_read == (MIN_FRAMES + RECLAIM_BATCH) * 8
    assert c.cleancache_hits == 4
    assert c.cleancache_puts == c.reclaims_file == 2 * RECLAIM_BATCH
    assert c.stale_pages == 0


def test_dirty_pages_are_written_back_on_reclaim_and_at_sync(
        disk: VirtualDisk) -> None:
    guest = _guest(disk)
    guest.write(0, 0, 8)
    guest.write(0, 0, 8)  # overwrites coalesce while dirty
    guest.read(0, 100, MIN_FRAMES)  # reclaims the dirty pages
    assert guest.counters().disk_sectors_written == 8 * 8
    guest.write(0, 500, 3)
    assert guest.sync() == 3
    assert guest.counters().disk_sectors_written == 11 * 8
    assert guest.counters().writebacks == 11


def test_a_partial_write_of_an_absent_block_reads_it_first(
        disk: VirtualDisk) -> None:
    guest = _guest(disk)
    guest.write(0, 7, 3, partial_first=True)
    c = guest.counters()
    assert c.disk_sectors_read == 8  # block 7 only; 8 and 9 are overwritten
    assert c.page_cache_misses == 1


def test_written_data_comes_back_from_cleancache_not_the_old_data(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host)
    guest.read(0, 0, 4)                      # version 0 in RAM
    guest.read(0, 100, MIN_FRAMES)           # version 0 goes to cleancache
    guest.write(0, 0, 4)                     # overwrite: copy invalidated
    guest.read(0, 200, MIN_FRAMES)           # version 1 written, put
    guest.read(0, 0, 4)                      # ... and got back
    c = guest.counters()
    assert c.cleancache_invalidates == 4
    assert c.cleancache_hits >= 4
    assert c.stale_pages == 0
    assert disk.version(0, 0) == 1


def test_discard_drops_pages_and_later_reads_see_new_contents(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host)
    guest.write("vol", 0, 4)
    guest.read("vol", 100, MIN_FRAMES)  # dirty pages written, put
    in_ram = guest.resident
    assert guest.discard("vol") == in_ram > 0
    assert guest.resident == 0
    guest.read("vol", 0, 4)
    c = guest.counters()
    assert c.cleancache_hits == 0  # a new file: nothing from the old one
    assert c.stale_pages == 0


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from("rwpd"), st.integers(0, 90),
                              st.integers(1, 6)), max_size=120))
def test_random_io_through_a_small_cleancache_is_never_stale(
        pages: list[bytes], ops: list[tuple[str, int, int]]) -> None:
    host = tmem.Host(capacity=24 * 4096, compress="lz4")
    guest = _guest(VirtualDisk(seed=3, contents=pages), host)
    for op, block, count in ops:
        if op == "r":
            guest.read(0, block, count)
        elif op == "w":
            guest.write(0, block, count)
        elif op == "p":
            guest.write(0, block, count, partial_first=True,
                        partial_last=True)
        else:
            guest.discard(0)
    guest.read(0, 0, 96)
    assert guest.counters().stale_pages == 0
    host.check()


# -- anonymous memory -------------------------------------------------------

def test_swapped_pages_go_to_frontswap_and_come_back(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host)
    for page in range(MIN_FRAMES + RECLAIM_BATCH):
        guest.touch(page, write=True)
    for page in range(4):
        guest.touch(page)
    c = guest.counters()
    assert c.frontswap_stores == c.frontswap_accepted == 2 * RECLAIM_BATCH
    assert c.frontswap_loads == c.anon_faults == 4
    assert (c.swap_reads, c.swap_writes) == (0, 0)
    assert c.stale_pages == 0


def test_refused_stores_go_to_the_swap_disk(disk: VirtualDisk) -> None:
    host = tmem.Host(capacity=4 * 4096, compress="none")
    guest = _guest(disk, host)
    for page in range(MIN_FRAMES + RECLAIM_BATCH):
        guest.touch(page, write=True)
    for page in range(RECLAIM_BATCH):
        guest.touch(page)
    c = guest.counters()
    assert c.frontswap_accepted == 3
    assert c.swap_writes == c.frontswap_stores - 3
    assert c.frontswap_loads + c.swap_reads == c.anon_faults
    assert c.stale_pages == 0


def test_without_tmem_swap_goes_to_disk(disk: VirtualDisk) -> None:
    guest = _guest(disk)
    for page in range(MIN_FRAMES + 1):
        guest.touch(page, write=True)
    guest.touch(0)
    c = guest.counters()
    assert (c.swap_writes, c.swap_reads) == (RECLAIM_BATCH, 1)


def test_a_clean_swapped_in_page_is_reclaimed_without_a_new_store(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host)
    for page in range(MIN_FRAMES + 1):
        guest.touch(page, write=True)
    guest.touch(0)                                     # swapped in, clean
    for page in range(100, 100 + MIN_FRAMES):
        guest.touch(page, write=True)                  # 0 goes out again
    stores = guest.counters().frontswap_stores
    assert stores == guest.counters().reclaims_anon - 1


def test_writing_a_swapped_in_page_frees_its_slot(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host)
    for page in range(MIN_FRAMES + 1):
        guest.touch(page, write=True)
    guest.touch(0, write=True)
    c = guest.counters()
    assert c.frontswap_invalidates == 1
    assert c.frontswap_pages == RECLAIM_BATCH - 1


def test_freeing_pages_releases_frames_and_slots(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host)
    for page in range(MIN_FRAMES + 1):
        guest.touch(page, write=True)
    for page in range(MIN_FRAMES + 1):
        guest.free(page)
    assert guest.committed == 0 and guest.resident == 0
    assert guest.counters().frontswap_pages == 0
    with pytest.raises(InvalidArgument, match="page 3 is not in use"):
        guest.free(3)


def test_a_full_swap_area_is_out_of_memory(disk: VirtualDisk) -> None:
    guest = _guest(disk, swap_slots=8)
    with pytest.raises(LimitExceeded, match="is out of memory") as caught:
        for page in range(MIN_FRAMES + 9):
            guest.touch(page, write=True)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("swappiness", "file_out", "anon_out"),
                         [(0, RECLAIM_BATCH, 0), (200, 0, RECLAIM_BATCH)])
def test_swappiness_picks_which_pages_go(disk: VirtualDisk, swappiness: int,
                                         file_out: int, anon_out: int) -> None:
    guest = _guest(disk, frames=2 * MIN_FRAMES, swappiness=swappiness)
    for page in range(MIN_FRAMES):
        guest.touch(page)
    guest.read(0, 0, MIN_FRAMES)
    guest.read(0, 1000, 1)
    c = guest.counters()
    assert (c.reclaims_file, c.reclaims_anon) == (file_out, anon_out)


def test_with_swappiness_100_the_oldest_page_goes(disk: VirtualDisk) -> None:
    guest = _guest(disk, frames=64, swappiness=100)
    guest.read(0, 0, 16)
    for page in range(16):
        guest.touch(page)
    guest.read(0, 100, 16)
    for page in range(100, 116):
        guest.touch(page)
    guest.read(0, 1000, 1)  # 32 go: the first 16 file, the first 16 anon
    c = guest.counters()
    assert (c.reclaims_file, c.reclaims_anon) == (16, 16)
    assert guest.holds_anon(0) and guest.counters().resident_anon == 16


# -- selfballooning and selfshrinking ----------------------------------------

def test_an_idle_guest_balloons_down_by_an_eighth_of_the_gap(
        disk: VirtualDisk, host: tmem.Host) -> None:
    balloon = SelfBalloon(reserve=8, floor=40)
    guest = _guest(disk, host, frames=200, balloon=balloon)
    guest.read(0, 0, 200)
    guest.tick()
    assert guest.target == 200 - (200 - 8) // 8
    for _ in range(60):
        guest.tick()
    assert guest.target == 40
    assert guest.resident <= 40
    assert guest.counters().cleancache_puts == 160


def test_a_growing_guest_takes_its_frames_back_at_once(
        disk: VirtualDisk) -> None:
    guest = _guest(disk, frames=400, balloon=SelfBalloon(reserve=8,
                                                         floor=40))
    for _ in range(40):
        guest.tick()
    assert guest.target == 40
    for page in range(30):
        guest.touch(page, write=True)
    guest.tick()
    assert guest.target == 40  # 30 + 8 is still under the floor
    for page in range(30, 200):
        guest.touch(page, write=True)
    guest.tick()
    assert guest.target == 200 + 8
    assert guest.counters().target_frames_low == 40


def test_selfshrink_moves_frontswap_pages_to_disk_after_inertia(
        disk: VirtualDisk, host: tmem.Host) -> None:
    guest = _guest(disk, host, selfshrink=SelfShrink(inertia=3))
    for page in range(MIN_FRAMES + RECLAIM_BATCH):
        guest.touch(page, write=True)
    stored = guest.counters().frontswap_pages
    guest.tick()  # the count grew: re-armed
    guest.tick()
    guest.tick()
    assert guest.counters().selfshrink_pages == 0
    guest.tick()
    c = guest.counters()
    assert c.frontswap_pages == stored - stored // 20
    assert c.swap_writes == c.selfshrink_pages == stored // 20
    for page in range(MIN_FRAMES + RECLAIM_BATCH):
        guest.touch(page)
    assert guest.counters().stale_pages == 0


# -- bad input and teardown -------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda g: g.read(0, -1), "block -1 must be an int"),
    (lambda g: g.read(0, 5, 0), "block count 0 must be >= 1"),
    (lambda g: g.write(0, 1 << 40), "block 1099511627776"),
    (lambda g: g.read(1.5, 0), "device 1.5 must be an int or a str"),
])
def test_bad_requests_are_one_line_errors(disk: VirtualDisk, call: object,
                                          message: str) -> None:
    guest = _guest(disk)
    with pytest.raises(InvalidArgument, match=message):
        call(guest)  # type: ignore[operator]
    assert guest.counters().disk_sectors_read == 0


def test_bad_sizes_are_refused(disk: VirtualDisk) -> None:
    with pytest.raises(InvalidArgument, match="guest frames 8 must be"):
        Guest("g", 8, None, disk=disk)
    with pytest.raises(InvalidArgument, match="swappiness 300"):
        Guest("g", 64, None, disk=disk, swappiness=300)


def test_close_leaves_nothing_in_tmem(disk: VirtualDisk,
                                      host: tmem.Host) -> None:
    guest = _guest(disk, host)
    guest.read(0, 0, 100)
    for page in range(100):
        guest.touch(page, write=True)
    assert host.stats().pages > 0
    guest.close()
    assert host.stats().pages == 0
