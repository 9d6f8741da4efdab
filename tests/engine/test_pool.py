"""The put/get/flush contract of each pool kind."""

from __future__ import annotations

import uuid

import pytest

import tmem
from tmem import InvalidArgument, NoSuchPool


def test_private_ephemeral_get_is_exclusive(host: tmem.Host,
                                            pages: list[bytes]) -> None:
    pool = host.client("a").new_pool()
    assert pool.put(7, 1, pages[0]) is True
    assert pool.get(7, 1) == pages[0]
    assert pool.get(7, 1) is None
    assert pool.stats().content.pages == 0


def test_persistent_get_keeps_the_page(host: tmem.Host,
                                       pages: list[bytes]) -> None:
    pool = host.client("a").new_pool(persistent=True)
    assert pool.put(7, 1, pages[0])
    assert pool.get(7, 1) == pages[0]
    assert pool.get(7, 1) == pages[0]


def test_shared_ephemeral_get_keeps_the_page_for_every_sharer(
        host: tmem.Host, pages: list[bytes]) -> None:
    u = uuid.uuid4()
    a, b = host.client("a"), host.client("b")
    host.authorize(a, u)
    host.authorize(b, u)
    pa, pb = a.new_pool(shared=True, uuid=u), b.new_pool(shared=True, uuid=u)
    assert pa.put(1, 2, pages[5])
    assert pb.get(1, 2) == pages[5]
    assert pa.get(1, 2) == pages[5]


def test_duplicate_put_replaces_the_data(host: tmem.Host,
                                         pages: list[bytes]) -> None:
    pool = host.client("a").new_pool(persistent=True)
    pool.put(1, 1, pages[0])
    assert pool.put(1, 1, pages[1])
    assert pool.get(1, 1) == pages[1]
    stats = pool.stats()
    assert stats.ops.dup_replaced == 1
    assert stats.content.pages == 1


def test_refused_duplicate_put_flushes_old_page(pages: list[bytes]) -> None:
    # A same-filled page costs only metadata; replacing it with a raw page
    # needs 4 KiB more than the host has, so the put is refused and the
    # old (now stale) page must be gone.
    host = tmem.Host(capacity=4096 + 600, compress="none")
    pool = host.client("a").new_pool(persistent=True)
    assert pool.put(1, 1, b"\x07" * 4096)
    assert pool.put(2, 2, pages[0])
    assert pool.put(1, 1, pages[1]) is False
    assert pool.get(1, 1) is None
    assert pool.get(2, 2) == pages[0]
    ops = pool.stats().ops
    assert (ops.dup_flushed, ops.refused_full) == (1, 1)
    host.check()


def test_flush_page_reports_whether_a_page_was_there(
        host: tmem.Host, pages: list[bytes]) -> None:
    pool = host.client("a").new_pool(persistent=True)
    pool.put(1, 1, pages[0])
    assert pool.flush_page(1, 1) is True
    assert pool.flush_page(1, 1) is False
    assert pool.get(1, 1) is None


def test_flush_object_removes_every_index_of_that_object_only(
        host: tmem.Host, pages: list[bytes]) -> None:
    pool = host.client("a").new_pool(persistent=True)
    for i in range(10):
        pool.put(1, i, pages[i])
        pool.put(2, i, pages[i + 10])
    assert pool.flush_object(1) == 10
    assert pool.flush_object(1) == 0
    assert all(pool.get(1, i) is None for i in range(10))
    assert [pool.get(2, i) for i in range(10)] == pages[10:20]
    assert pool.stats().ops.object_flush_pages == 10


def test_oid_as_three_words_names_the_same_object(
        host: tmem.Host, pages: list[bytes]) -> None:
    pool = host.client("a").new_pool(persistent=True)
    pool.put((5, 0, 0), 3, pages[0])
    assert pool.get(5, 3) == pages[0]
    pool.put(2**191, 2**32 - 1, pages[1])
    assert pool.get((0, 0, 2**63), 2**32 - 1) == pages[1]


@pytest.mark.parametrize("call", [
    lambda p, page: p.put(-1, 0, page),
    lambda p, page: p.put(0, 2**32, page),
    lambda p, page: p.put(0, 0, page[:100]),
    lambda p, page: p.get(2**192, 0),
    lambda p, page: p.flush_page(0, -5),
    lambda p, page: p.flush_object("x"),
    lambda p, page: p.put_many([(0, 0, page), (0, 1, b"short")]),
])
def test_bad_handles_raise_and_change_nothing(host: tmem.Host,
                                              pages: list[bytes],
                                              call: object) -> None:
    pool = host.client("a").new_pool(persistent=True)
    pool.put(0, 0, pages[0])
    before = pool.stats()
    with pytest.raises(InvalidArgument):
        call(pool, pages[1])  # type: ignore[operator]
    assert pool.stats().content == before.content
    assert pool.get(0, 0) == pages[0]


def test_destroyed_pool_refuses_every_call(host: tmem.Host,
                                           pages: list[bytes]) -> None:
    client = host.client("a")
    pool = client.new_pool(persistent=True)
    pool.put(1, 1, pages[0])
    pool.destroy()
    for call in (lambda: pool.put(1, 1, pages[0]), lambda: pool.get(1, 1),
                 lambda: pool.flush_page(1, 1), pool.destroy,
                 lambda: pool.flush_object(1)):
        with pytest.raises(NoSuchPool, match="was destroyed"):
            call()
    with pytest.raises(NoSuchPool, match="names no pool"):
        client.pool(pool.pool_id)
    assert host.stats().used == 0


def test_batches_act_in_order_under_one_call(host: tmem.Host,
                                             pages: list[bytes]) -> None:
    pool = host.client("a").new_pool(persistent=True)
    items = [(1, i, pages[i]) for i in range(32)]
    assert pool.put_many(items) == [True] * 32
    got = pool.get_many([(1, i) for i in range(34)])
    assert got == [*pages[:32], None, None]
    assert pool.flush_many([(1, 0), (1, 0), (1, 1)]) == [True, False, True]


def test_pool_flags_describe_the_pool(host: tmem.Host) -> None:
    client = host.client("a")
    pool = client.new_pool_from_flags(0x01000001)
    assert pool.persistent and not pool.shared
    assert pool.flags == 0x01000001
    with pytest.raises(InvalidArgument, match="reserved bits"):
        client.new_pool_from_flags(0x01000101)


def test_zero_and_same_filled_pages_take_no_payload(
        host: tmem.Host) -> None:
    pool = host.client("a").new_pool(persistent=True)
    pool.put(1, 1, bytes(4096))
    pool.put(1, 2, b"\xab" * 4096)
    assert pool.get(1, 1) == bytes(4096)
    assert pool.get(1, 2) == b"\xab" * 4096
    content = pool.stats().content
    assert (content.same_filled_pages, content.zero_pages) == (2, 1)
    assert content.raw_pages == content.compressed_pages == 0


def test_a_refused_put_counts_only_its_refusal(pages: list[bytes]) -> None:
    # room for one page's metadata, not two: the second put of any kind
    # is refused, and must not be counted as stored the way it came
    host = tmem.Host(capacity=200, compress="lz4", dedup=True)
    pool = host.client("a").new_pool(persistent=True)
    assert pool.put(1, 0, bytes(4096))
    assert not pool.put(1, 1, b"\x5a" * 4096)  # same-filled
    assert not pool.put(1, 2, bytes(4096))     # same-filled, zero
    ops = pool.stats().ops
    assert (ops.puts, ops.puts_stored, ops.refused_full) == (3, 1, 2)
    assert ops.same_filled == 1
    assert ops.compress_poor == ops.dedup_hits == 0
    host.check()


def test_the_journal_notes_every_changed_handle_until_taken(
        host: tmem.Host, pages: list[bytes]) -> None:
    pool = host.client("a").new_pool(persistent=True)
    pool.put(1, 0, pages[0])
    with host.lock:
        pool.begin_journal()
    pool.put(1, 1, pages[1])          # new
    pool.put(1, 0, pages[2])          # replaced
    pool.put(2, 0, pages[3])
    pool.flush_object(2)              # gone again
    pool.get(1, 1)                    # a read changes nothing
    with host.lock:
        assert pool.journal_length == 3
        assert pool.take_journal() == {(1, 0), (1, 1), (2, 0)}
        assert pool.journal_length == 0
        pool.restore_flush(1, 1)
        assert pool.take_journal() == {(1, 1)}
        pool.end_journal()
        assert sorted(pool.handles()) == [(1, 0)]
        assert pool.entry(1, 1) is None
    assert pool.stats().ops.flushes == 0  # restore_flush is not the client's
