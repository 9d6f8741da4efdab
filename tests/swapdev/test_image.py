"""The swap image's file logic, without mounting anything."""

from __future__ import annotations

import errno

import pytest

import tmem
from tmem import InvalidArgument
from tmem.swapdev.image import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    OBJECT_PAGES,
    SwapImage,
    handle_of,
)

P = tmem.PAGE_SIZE
PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


@pytest.fixture
def image(host: tmem.Host) -> SwapImage:
    return SwapImage(host.client("swap").new_pool(persistent=True), 8 << 20)


def test_offsets_map_to_one_object_per_swap_cluster() -> None:
    assert handle_of(0) == (0, 0)
    assert handle_of(OBJECT_PAGES - 1) == (0, OBJECT_PAGES - 1)
    assert handle_of(OBJECT_PAGES) == (1, 0)
    assert handle_of(5 * OBJECT_PAGES + 7) == (5, 7)


def test_written_pages_read_back_byte_for_byte(image: SwapImage,
                                               pages: list[bytes]) -> None:
    data = b"".join(pages[:3])
    assert image.write(7 * P, data) == len(data)
    assert image.read(7 * P, 3 * P) == data
    assert image.read(8 * P, P) == pages[1]


def test_pages_land_at_their_handles(image: SwapImage,
                                     pages: list[bytes]) -> None:
    image.write((OBJECT_PAGES + 2) * P, pages[0])
    assert image.pool.get(1, 2) == pages[0]


def test_never_written_pages_read_as_zeros(image: SwapImage,
                                           pages: list[bytes]) -> None:
    image.write(0, pages[0])
    assert image.read(P, 2 * P) == bytes(2 * P)
    assert image.read(P - 10, 20) == pages[0][-10:] + bytes(10)


def test_reads_may_be_unaligned_and_stop_at_the_end(
        image: SwapImage, pages: list[bytes]) -> None:
    last = image.size - P
    image.write(last, pages[4])
    assert image.read(last + 100, 50) == pages[4][100:150]
    assert image.read(last + 4000, 1000) == pages[4][4000:]
    assert image.read(image.size, 10) == b""


def test_partial_page_writes_are_refused_with_einval(
        image: SwapImage, pages: list[bytes]) -> None:
    for offset, data in ((0, b"x" * 100), (512, pages[0]),
                         (0, pages[0] + b"x")):
        with pytest.raises(OSError) as caught:
            image.write(offset, data)
        assert caught.value.errno == errno.EINVAL
        assert "whole 4096-byte pages" in str(caught.value)
    assert image.pool.stats().content.pages == 0


def test_writes_past_the_end_are_refused_with_enospc(
        image: SwapImage, pages: list[bytes]) -> None:
    with pytest.raises(OSError) as caught:
        image.write(image.size - P, pages[0] + pages[1])
    assert caught.value.errno == errno.ENOSPC


def test_refused_write_fails_with_eio_and_leaves_none_of_it(
        pages: list[bytes]) -> None:
    # room for two raw pages: the third of a three-page write is refused
    host = tmem.Host(capacity=2 * (P + 128), compress="none")
    image = SwapImage(host.client("swap").new_pool(persistent=True),
                      1 << 20)
    with pytest.raises(OSError) as caught:
        image.write(0, b"".join(pages[:3]))
    assert caught.value.errno == errno.EIO
    assert "refused 1 of 3 pages" in str(caught.value)
    assert image.read(0, 3 * P) == bytes(3 * P)
    stats = image.stats()
    assert (stats.refused_writes, stats.refused_pages) == (1, 1)
    assert (stats.writes, stats.pages_stored) == (0, 0)
    host.check()


def test_refused_overwrite_never_leaves_the_old_page_readable(
        pages: list[bytes]) -> None:
    host = tmem.Host(capacity=2 * (P + 128), compress="none")
    image = SwapImage(host.client("swap").new_pool(persistent=True),
                      1 << 20)
    image.write(0, pages[0])
    with pytest.raises(OSError):
        image.write(0, b"".join(pages[1:4]))
    assert image.read(0, P) == bytes(P)


def test_punch_hole_flushes_pages_which_then_read_as_zeros(
        image: SwapImage, pages: list[bytes]) -> None:
    image.write(0, b"".join(pages[:4]))
    assert image.fallocate(PUNCH, P, 2 * P) == 2
    assert image.read(0, 4 * P) == (pages[0] + bytes(2 * P) + pages[3])
    stats = image.stats()
    assert (stats.discards, stats.discarded_pages) == (1, 2)
    assert stats.pages_stored == 2


def test_punching_whole_clusters_flushes_whole_objects(
        image: SwapImage, pages: list[bytes]) -> None:
    cluster = OBJECT_PAGES * P
    for n in range(3):
        image.write(n * cluster + 5 * P, pages[n])
    before = image.pool.stats().ops
    # from the middle of cluster 0 to the end of cluster 2
    assert image.punch(P, 3 * cluster - P) == 3
    after = image.pool.stats().ops
    assert after.object_flushes - before.object_flushes == 2  # 1 and 2
    assert after.flushes - before.flushes == OBJECT_PAGES - 1
    assert image.stats().pages_stored == 0


def test_only_flushing_fallocate_modes_are_supported(
        image: SwapImage) -> None:
    with pytest.raises(OSError) as caught:
        image.fallocate(0, 0, P)
    assert caught.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as caught:
        image.fallocate(PUNCH, 100, P)
    assert caught.value.errno == errno.EINVAL
    assert image.stats().bad_requests == 2


def test_a_pool_that_fails_becomes_eio_counted_and_named(
        host: tmem.Host, pages: list[bytes]) -> None:
    client = host.client("swap")
    image = SwapImage(client.new_pool(persistent=True), 1 << 20)
    image.write(0, pages[0])
    client.close()  # every pool call raises NoSuchPool from now on
    for call in (lambda: image.read(0, P), lambda: image.write(P, pages[1]),
                 lambda: image.fallocate(PUNCH, 0, P)):
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno == errno.EIO
        assert "failed in the pool: pool 0" in str(caught.value)
    counts = image._counts
    assert (counts.pool_errors, counts.writes, counts.reads) == (3, 1, 0)


def test_a_new_image_starts_empty_whatever_the_pool_held(
        host: tmem.Host, pages: list[bytes]) -> None:
    pool = host.client("swap").new_pool(persistent=True)
    pool.put(0, 3, pages[0])
    image = SwapImage(pool, 1 << 20)
    assert image.read(3 * P, P) == bytes(P)
    assert pool.stats().content.pages == 0


def test_an_image_needs_a_persistent_pool_and_whole_pages(
        host: tmem.Host) -> None:
    client = host.client("swap")
    with pytest.raises(InvalidArgument, match="ephemeral"):
        SwapImage(client.new_pool(), 1 << 20)
    with pytest.raises(InvalidArgument, match="multiple of 4096"):
        SwapImage(client.new_pool(persistent=True), 5000)


def test_stats_count_the_traffic_and_the_pool_content(
        image: SwapImage, pages: list[bytes]) -> None:
    image.write(0, b"".join(pages[:64]))
    image.read(0, 8 * P)
    stats = image.stats()
    assert (stats.writes, stats.write_bytes) == (1, 64 * P)
    assert (stats.reads, stats.read_bytes) == (1, 8 * P)
    assert stats.pages_stored == stats.pages_peak == 64
    assert stats.compression_ratio > 1.2  # real pages compress
    assert stats.as_dict()["compression_ratio"] == stats.compression_ratio
