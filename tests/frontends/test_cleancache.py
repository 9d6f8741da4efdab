"""Cleancache: file-keyed gets and puts, invalidation, and coherency when
a put races an invalidate."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable

import pytest

import tmem
from tmem import InvalidArgument, NoSuchPool
from tmem.engine.api import PoolAPI
from tmem.frontends import Cleancache, handle_key, inode_key


@pytest.fixture
def cache(host: tmem.Host) -> Cleancache:
    return Cleancache.mount(host.client("guest"))


def test_a_put_page_comes_back_once(cache: Cleancache,
                                    pages: list[bytes]) -> None:
    key = inode_key(12, generation=3)
    assert cache.put(key, 5, pages[0])
    assert cache.get(key, 5) == pages[0]
    assert cache.get(key, 5) is None  # private pools: gets are exclusive
    stats = cache.stats()
    assert (stats.puts, stats.puts_stored, stats.gets, stats.hits) == \
        (1, 1, 2, 1)


def test_file_keys_keep_inode_generation_and_device_apart() -> None:
    keys = {inode_key(1), inode_key(1, 1), inode_key(1, 0, 1),
            inode_key(2), handle_key(b"\x01\x02"), handle_key(b"\x03")}
    assert len(keys) == 6
    assert inode_key(7, 2, 1) == 7 | 2 << 64 | 1 << 128
    assert handle_key(bytes(range(24))) < (1 << 192) - 1


@pytest.mark.parametrize(("make", "message"), [
    (lambda: inode_key(-1), "inode -1 must be a u64"),
    (lambda: inode_key(1, 1 << 64), "generation 18446744073709551616"),
    (lambda: inode_key((1 << 64) - 1, (1 << 64) - 1, (1 << 64) - 1),
     "all ones"),
    (lambda: handle_key(b""), "must be 1 to 24"),
    (lambda: handle_key(b"x" * 25), "is 25 bytes"),
    (lambda: handle_key(b"\xff" * 24), "all ones"),
    (lambda: handle_key("fh"), "must be bytes, not str"),
])
def test_bad_file_identities_are_refused(make: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        make()  # type: ignore[operator]


def test_batches_answer_in_order(cache: Cleancache,
                                 pages: list[bytes]) -> None:
    key = inode_key(1)
    assert cache.put_many([(key, i, pages[i]) for i in range(8)]) == \
        [True] * 8
    got = cache.get_many([(key, i) for i in (7, 100, 0)])
    assert got == [pages[7], None, pages[0]]


def test_an_invalidated_page_is_never_returned(cache: Cleancache,
                                               pages: list[bytes]) -> None:
    key = inode_key(1)
    cache.put_many([(key, 0, pages[0]), (key, 1, pages[1])])
    assert cache.invalidate_page(key, 0) is True
    assert cache.invalidate_page(key, 0) is False
    assert cache.get(key, 0) is None
    assert cache.get(key, 1) == pages[1]


def test_invalidate_inode_drops_that_file_only(cache: Cleancache,
                                               pages: list[bytes]) -> None:
    doomed, kept = inode_key(1), inode_key(2)
    cache.put_many([(doomed, i, pages[i]) for i in range(4)])
    cache.put(kept, 0, pages[9])
    assert cache.invalidate_inode(doomed) == 4
    assert cache.get_many([(doomed, i) for i in range(4)]) == [None] * 4
    assert cache.get(kept, 0) == pages[9]
    assert cache.stats().invalidate_inode_pages == 4


def test_unmount_frees_the_pool_and_later_calls_are_refused(
        host: tmem.Host, pages: list[bytes]) -> None:
    cache = Cleancache.mount(host.client("guest"))
    cache.put(inode_key(1), 0, pages[0])
    cache.invalidate_fs()
    cache.invalidate_fs()  # a second unmount does nothing
    assert host.stats().pages == 0
    assert not cache.mounted
    with pytest.raises(NoSuchPool, match="was unmounted"):
        cache.get(inode_key(1), 0)
    with pytest.raises(NoSuchPool, match="was unmounted"):
        cache.put(inode_key(1), 0, pages[0])
    assert cache.stats().invalidate_fs == 1


def test_offsets_beyond_the_index_are_counted_not_cached(
        cache: Cleancache, pages: list[bytes]) -> None:
    key, far = inode_key(1), 1 << 32
    assert cache.put(key, far, pages[0]) is False
    assert cache.get(key, far) is None
    assert cache.invalidate_page(key, far) is False
    assert cache.stats().beyond_index == 2
    assert cache.pool.stats().ops.puts == 0


@pytest.mark.parametrize(("item", "message"), [
    ((inode_key(1), -1, None), "page offset -1 must be a non-negative int"),
    ((inode_key(1), 1.5, None), "page offset 1.5"),
    ((-3, 0, None), "object id -3 is out of range"),
    ((inode_key(1), 0, b"short"), "page length 5 is wrong"),
])
def test_bad_input_changes_nothing(cache: Cleancache, pages: list[bytes],
                                   item: tuple[object, object, object],
                                   message: str) -> None:
    key, offset, page = item
    good = (inode_key(9), 0, pages[0])
    bad = (key, offset, pages[1] if page is None else page)
    with pytest.raises(InvalidArgument, match=message) as caught:
        cache.put_many([good, bad])  # type: ignore[list-item]
    assert "\n" not in str(caught.value)
    assert cache.pool.stats().content.pages == 0
    assert cache.stats() == type(cache.stats())()


def test_a_cluster_filesystem_shares_one_pool(host: tmem.Host,
                                              pages: list[bytes]) -> None:
    fs_uuid = uuid.uuid4()
    nodes = [host.client("node-a"), host.client("node-b")]
    for node in nodes:
        host.authorize(node, fs_uuid)
    a, b = (Cleancache.mount(node, fs_uuid) for node in nodes)
    key = handle_key(b"\x01\x00\x00\x00\x07\x00\x00\x00")
    a.put(key, 3, pages[4])
    assert b.get(key, 3) == pages[4]
    assert a.get(key, 3) == pages[4]  # shared gets keep the page


def test_a_persistent_pool_is_refused(host: tmem.Host) -> None:
    pool = host.client("guest").new_pool(persistent=True)
    with pytest.raises(InvalidArgument, match="is persistent"):
        Cleancache(pool)


# -- a put racing an invalidate ------------------------------------------

class _SlowPuts:
    """A pool whose puts wait for `land` before reaching the real pool:
    a put in flight on a slow link while other calls overtake it."""

    def __init__(self, pool: PoolAPI) -> None:
        self._pool = pool
        self.sent = threading.Event()
        self.land = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._pool, name)

    def put_many(self, items: Iterable[tuple[int, int, bytes]]
                 ) -> list[bool]:
        self.sent.set()
        assert self.land.wait(5)
        return self._pool.put_many(items)


def _start(target: object, *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args)  # type: ignore
    thread.start()
    return thread


def test_the_race_is_real_without_the_frontend(host: tmem.Host,
                                               pages: list[bytes]) -> None:
    # What the frontend guards against: the put was called first, the
    # flush ran first, and the stale page is readable after the flush.
    pool = _SlowPuts(host.client("guest").new_pool())
    key, old = inode_key(1), pages[0]
    putter = _start(pool.put_many, [(key, 0, old)])
    assert pool.sent.wait(5)
    pool.flush_object(key)  # type: ignore[attr-defined]
    pool.land.set()
    putter.join()
    assert pool.get(key, 0) == old  # type: ignore[attr-defined]


def test_a_put_overtaken_by_an_invalidate_is_never_returned(
        host: tmem.Host, pages: list[bytes]) -> None:
    slow = _SlowPuts(host.client("guest").new_pool())
    cache = Cleancache(slow)  # type: ignore[arg-type]
    key, old = inode_key(1), pages[0]

    # the put is sent; then the file is truncated
    putter = _start(cache.put, key, 0, old)
    assert slow.sent.wait(5)
    invalidator = _start(cache.invalidate_inode, key)
    invalidator.join(0.2)
    assert invalidator.is_alive()  # it waits for the older put

    # the put lands late; the invalidate may only return after its flush
    slow.land.set()
    invalidator.join(5)
    putter.join(5)
    assert cache.get(key, 0) is None
    stats = cache.stats()
    assert (stats.puts_raced, stats.puts_stored) == (1, 0)
    assert cache.pool.stats().content.pages == 0


def test_an_invalidate_waits_only_for_older_puts_of_its_files(
        host: tmem.Host, pages: list[bytes]) -> None:
    slow = _SlowPuts(host.client("guest").new_pool())
    cache = Cleancache(slow, stripes=2)  # type: ignore[arg-type]
    busy, other = 0, 1  # keys in different stripes
    putter = _start(cache.put, busy, 0, pages[0])
    assert slow.sent.wait(5)
    assert cache.invalidate_inode(other) == 0  # returns at once
    slow.land.set()
    putter.join(5)
    assert cache.get(busy, 0) == pages[0]


def test_a_put_after_the_invalidate_returned_is_kept(
        cache: Cleancache, pages: list[bytes]) -> None:
    key = inode_key(1)
    cache.put(key, 0, pages[0])
    cache.invalidate_inode(key)
    assert cache.put(key, 0, pages[1])
    assert cache.get(key, 0) == pages[1]


def test_unmount_waits_for_puts_in_flight(host: tmem.Host,
                                          pages: list[bytes]) -> None:
    slow = _SlowPuts(host.client("guest").new_pool())
    cache = Cleancache(slow)  # type: ignore[arg-type]
    putter = _start(cache.put, inode_key(1), 0, pages[0])
    assert slow.sent.wait(5)
    unmounter = _start(cache.invalidate_fs)
    unmounter.join(0.2)
    assert unmounter.is_alive()
    slow.land.set()
    unmounter.join(5)
    putter.join(5)
    assert host.stats().pages == 0
