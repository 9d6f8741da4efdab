"""Capacity, eviction, fairness, caps, freezing, sharing and accounting."""

from __future__ import annotations

import threading
import uuid

import pytest

import tmem
from tmem import (
    CheckFailed,
    InvalidArgument,
    LimitExceeded,
    NoSuchClient,
    PermissionDenied,
)
from tmem.engine.pool import LRU_METADATA, PAGE_METADATA

RAW_EPHEMERAL = 4096 + PAGE_METADATA + LRU_METADATA
RAW_PERSISTENT = 4096 + PAGE_METADATA


def raw_host(pages: int, **kwargs: object) -> tmem.Host:
    """A host without compression that holds exactly `pages` raw
    ephemeral pages."""
    return tmem.Host(capacity=pages * RAW_EPHEMERAL, compress="none",
                     **kwargs)  # type: ignore[arg-type]


def test_capacity_bounds_accounted_bytes(pages: list[bytes]) -> None:
    host = raw_host(10)
    pool = host.client("a").new_pool()
    for i in range(50):
        assert pool.put(1, i, pages[i])
        assert host.stats().used <= host.capacity
    assert pool.stats().content.pages == 10
    host.check()


def test_eviction_takes_least_recently_used_first(
        pages: list[bytes]) -> None:
    host = raw_host(4)
    pool = host.client("a").new_pool()
    for i in range(4):
        pool.put(1, i, pages[i])
    pool.put(1, 4, pages[4])
    assert pool.get(1, 0) is None
    assert [pool.get(1, i) for i in (1, 2, 3, 4)] == pages[1:5]


def test_shared_get_makes_a_page_most_recently_used(
        pages: list[bytes]) -> None:
    host = raw_host(3, shared_auth=False)
    pool = host.client("a").new_pool(shared=True, uuid=uuid.uuid4())
    for i in range(3):
        pool.put(1, i, pages[i])
    assert pool.get(1, 0) == pages[0]
    pool.put(1, 3, pages[3])
    assert pool.get(1, 1) is None
    assert pool.get(1, 0) == pages[0]


def test_persistent_pages_are_never_evicted(pages: list[bytes]) -> None:
    host = raw_host(6)
    client = host.client("a")
    swap, cache = client.new_pool(persistent=True), client.new_pool()
    for i in range(5):
        assert swap.put(1, i, pages[i])
    stored = [cache.put(2, i, pages[10 + i]) for i in range(20)]
    assert all(stored)
    assert [swap.get(1, i) for i in range(5)] == pages[:5]
    assert host.stats().persistent_content.evictions == 0


def test_persistent_put_evicts_ephemeral_pages_to_fit(
        pages: list[bytes]) -> None:
    host = raw_host(4)
    client = host.client("a")
    cache, swap = client.new_pool(), client.new_pool(persistent=True)
    for i in range(4):
        cache.put(1, i, pages[i])
    assert swap.put(1, 0, pages[9])
    assert cache.stats().content.evictions >= 1


def test_put_is_refused_when_only_persistent_pages_remain(
        pages: list[bytes]) -> None:
    host = tmem.Host(capacity=3 * RAW_PERSISTENT, compress="none")
    swap = host.client("a").new_pool(persistent=True)
    assert all(swap.put(1, i, pages[i]) for i in range(3))
    assert swap.put(1, 3, pages[3]) is False
    cache = host.client("b").new_pool()
    assert cache.put(1, 1, pages[4]) is False
    assert swap.stats().ops.refused_full == 1
    assert cache.stats().ops.refused_full == 1
    assert host.stats().ops.refused_full == 2


def test_client_over_its_weighted_share_loses_pages_first(
        pages: list[bytes]) -> None:
    host = raw_host(12)
    heavy = host.client("heavy", weight=100).new_pool()
    light = host.client("light", weight=100).new_pool()
    for i in range(4):
        light.put(1, i, pages[i])
    for i in range(40):
        heavy.put(1, i, pages[100 + i])
    # light holds 4 pages, under its half share: heavy paid for itself
    assert light.stats().content.pages == 4
    assert heavy.stats().content.pages == 8
    host.check()


def test_weights_split_the_pool_in_proportion(pages: list[bytes]) -> None:
    host = raw_host(12)
    big = host.client("big", weight=200).new_pool()
    small = host.client("small", weight=100).new_pool()
    for i in range(60):
        big.put(1, i, pages[i])
        small.put(1, i, pages[200 + i])
    assert big.stats().content.pages == 8
    assert small.stats().content.pages == 4


def test_weight_zero_clients_are_drained_first(pages: list[bytes]) -> None:
    host = raw_host(6)
    zero = host.client("zero", weight=0).new_pool()
    normal = host.client("normal").new_pool()
    for i in range(3):
        zero.put(1, i, pages[i])
    for i in range(6):
        normal.put(1, i, pages[10 + i])
    assert zero.stats().content.pages == 0
    assert normal.stats().content.pages == 6


def test_cap_makes_a_client_evict_its_own_pages(pages: list[bytes]) -> None:
    host = raw_host(100)
    capped = host.client("capped", cap=3 * RAW_EPHEMERAL).new_pool()
    other = host.client("other").new_pool()
    other.put(1, 1, pages[0])
    for i in range(10):
        assert capped.put(1, i, pages[i + 1])
    assert capped.stats().content.pages == 3
    assert other.get(1, 1) == pages[0]


def test_cap_refuses_persistent_puts_beyond_it(pages: list[bytes]) -> None:
    host = raw_host(100)
    client = host.client("capped", cap=2 * RAW_PERSISTENT)
    swap = client.new_pool(persistent=True)
    assert swap.put(1, 1, pages[0]) and swap.put(1, 2, pages[1])
    assert swap.put(1, 3, pages[2]) is False
    assert swap.stats().ops.refused_cap == 1
    host.set_cap(client, None)
    assert swap.put(1, 3, pages[2])


def test_frozen_client_keeps_gets_flushes_and_duplicate_puts(
        host: tmem.Host, pages: list[bytes]) -> None:
    client = host.client("a")
    pool = client.new_pool(persistent=True)
    pool.put(1, 1, pages[0])
    pool.put(1, 2, pages[1])
    host.freeze(client)
    assert pool.put(1, 3, pages[2]) is False
    assert pool.put(1, 1, pages[3]) is True
    assert pool.get(1, 1) == pages[3]
    assert pool.flush_page(1, 2)
    assert pool.stats().ops.refused_frozen == 1
    assert client.stats().frozen
    host.thaw(client)
    assert pool.put(1, 3, pages[2])


def test_freeable_counts_ephemeral_memory_only(host: tmem.Host,
                                               pages: list[bytes]) -> None:
    client = host.client("a")
    cache, swap = client.new_pool(), client.new_pool(persistent=True)
    cache.put(1, 1, pages[0])
    swap.put(1, 1, pages[1])
    assert host.freeable() == cache.stats().content.bytes
    assert host.stats().freeable == host.freeable()


def test_flush_frees_the_requested_bytes_of_ephemeral_memory(
        pages: list[bytes]) -> None:
    host = raw_host(100)
    client = host.client("a")
    cache, swap = client.new_pool(), client.new_pool(persistent=True)
    for i in range(20):
        cache.put(1, i, pages[i])
        swap.put(1, i, pages[i])
    freed = host.flush(5 * RAW_EPHEMERAL)
    assert freed == 5 * RAW_EPHEMERAL
    assert cache.stats().content.pages == 15
    assert host.flush("1GiB") == 15 * RAW_EPHEMERAL
    assert swap.stats().content.pages == 20


def test_pool_slots_are_limited_and_reused_lowest_first(
        host: tmem.Host) -> None:
    client = host.client("a")
    pools = [client.new_pool() for _ in range(16)]
    assert [p.pool_id for p in pools] == list(range(16))
    with pytest.raises(LimitExceeded, match="16 pools"):
        client.new_pool()
    pools[3].destroy()
    pools[7].destroy()
    assert client.new_pool().pool_id == 3


def test_max_pools_is_configurable(pages: list[bytes]) -> None:
    host = tmem.Host(max_pools=2)
    client = host.client("a")
    client.new_pool()
    client.new_pool()
    with pytest.raises(LimitExceeded):
        client.new_pool()
    with pytest.raises(InvalidArgument, match="max_pools"):
        tmem.Host(max_pools=0)


def test_max_clients_is_enforced() -> None:
    host = tmem.Host(max_clients=2)
    host.client("a")
    b = host.client("b")
    with pytest.raises(LimitExceeded, match="2 clients"):
        host.client("c")
    b.close()
    host.client("c")


def test_unknown_pool_ids_raise_no_such_pool(host: tmem.Host) -> None:
    client = host.client("a")
    for bad in (-1, 16, 2**40, "0", None):
        with pytest.raises(tmem.NoSuchPool):
            client.pool(bad)  # type: ignore[arg-type]


def test_shared_pool_needs_authorisation(host: tmem.Host) -> None:
    u = uuid.uuid4()
    client = host.client("a")
    with pytest.raises(PermissionDenied, match="not authorised"):
        client.new_pool(shared=True, uuid=u)
    host.authorize(client, u)
    assert client.new_pool(shared=True, uuid=u).shared
    host.revoke(client, u)
    assert client.new_pool(shared=True, uuid=u).uuid == u  # already joined


@pytest.mark.parametrize("kwargs, words", [
    ({"shared": True}, "needs a uuid"),
    ({"uuid": uuid.UUID(int=5)}, "only shared pools"),
    ({"shared": True, "persistent": True, "uuid": uuid.UUID(int=5)},
     "both shared and persistent"),
])
def test_pool_kind_mistakes_are_refused(host: tmem.Host,
                                        kwargs: dict[str, object],
                                        words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        host.client("a").new_pool(**kwargs)  # type: ignore[arg-type]


def test_shared_pool_count_is_limited(host: tmem.Host) -> None:
    host = tmem.Host(max_shared_pools=2, shared_auth=False)
    client = host.client("a")
    client.new_pool(shared=True, uuid=uuid.UUID(int=1))
    client.new_pool(shared=True, uuid=uuid.UUID(int=2))
    with pytest.raises(LimitExceeded, match="2 shared pools"):
        client.new_pool(shared=True, uuid=uuid.UUID(int=3))


def test_leaving_a_shared_pool_keeps_it_for_the_others(
        pages: list[bytes]) -> None:
    host = tmem.Host(shared_auth=False)
    u = uuid.uuid4()
    a, b = host.client("a"), host.client("b")
    pa, pb = a.new_pool(shared=True, uuid=u), b.new_pool(shared=True, uuid=u)
    pa.put(1, 1, pages[0])
    pa.destroy()
    assert pb.get(1, 1) == pages[0]
    # the pages are now billed to b, the remaining sharer
    assert b.stats().ephemeral_pages == 1 and a.stats().ephemeral_pages == 0
    host.check()
    pb.destroy()
    assert host.stats().shared_pools == 0 and host.stats().used == 0


def test_owner_closing_hands_shared_pages_to_a_sharer(
        pages: list[bytes]) -> None:
    host = tmem.Host(shared_auth=False)
    u = uuid.uuid4()
    a, b = host.client("a"), host.client("b")
    a.new_pool()  # so a's slot for the shared pool differs from b's
    pa, pb = a.new_pool(shared=True, uuid=u), b.new_pool(shared=True, uuid=u)
    for i in range(5):
        pa.put(1, i, pages[i])
    a.close()
    host.check()
    assert [pb.get(1, i) for i in range(5)] == pages[:5]
    assert host.flush("1MiB") > 0  # b's LRU now holds those pages
    host.check()


def test_closing_a_client_frees_its_private_pools(
        host: tmem.Host, pages: list[bytes]) -> None:
    client = host.client("a")
    client.new_pool(persistent=True).put(1, 1, pages[0])
    client.new_pool().put(1, 1, pages[1])
    client.close()
    client.close()
    assert host.stats().used == 0
    with pytest.raises(NoSuchClient, match="is closed"):
        client.new_pool()


def test_find_client_by_id_or_unique_name(host: tmem.Host) -> None:
    a = host.client("a")
    host.client("b")
    host.client("b")
    assert host.find_client(a.client_id) is a
    assert host.find_client("a") is a
    with pytest.raises(NoSuchClient, match="ambiguous"):
        host.find_client("b")
    with pytest.raises(NoSuchClient, match="no client is named"):
        host.find_client("zz")
    with pytest.raises(NoSuchClient, match="no client has id 99"):
        host.set_weight(99, 5)


@pytest.mark.parametrize("weight", [-1, 1.5, True, 10**7])
def test_bad_weights_are_refused(host: tmem.Host, weight: object) -> None:
    with pytest.raises(InvalidArgument, match="weight"):
        host.client("a", weight=weight)  # type: ignore[arg-type]


def test_compression_can_change_and_old_pages_still_read(
        host: tmem.Host, pages: list[bytes]) -> None:
    client = host.client("a", compress="lz4")
    pool = client.new_pool(persistent=True)
    pool.put(1, 1, pages[0])
    host.set_compress(client, "zstd")
    pool.put(1, 2, pages[1])
    host.set_compress(client, "none")
    pool.put(1, 3, pages[2])
    assert [pool.get(1, i) for i in (1, 2, 3)] == pages[:3]
    assert client.stats().compress == "none"


def test_dedup_stores_identical_pages_once_within_a_group(
        pages: list[bytes]) -> None:
    host = tmem.Host(dedup=True)
    a, b = host.client("a"), host.client("b")
    alone = host.client("alone", dedup=False)
    pa, pb, pc = a.new_pool(), b.new_pool(), alone.new_pool()
    for i in range(10):
        pa.put(1, i, bytes(pages[i]))
    before = host.stats().used
    for i in range(10):
        pb.put(1, i, bytes(bytearray(pages[i])))
    assert host.stats().used - before == 10 * (PAGE_METADATA + LRU_METADATA)
    assert host.stats().dedup_saved_bytes > 0
    pc.put(1, 0, bytes(bytearray(pages[0])))
    assert pc.stats().ops.dedup_hits == 0
    assert pb.stats().ops.dedup_hits == 10
    for i in range(10):
        assert pa.get(1, i) == pages[i]
    assert [pb.get(1, i) for i in range(10)] == pages[:10]
    host.check()


def test_named_dedup_groups_do_not_share_with_each_other(
        pages: list[bytes]) -> None:
    host = tmem.Host()
    a = host.client("a", dedup="tenant-x").new_pool()
    b = host.client("b", dedup="tenant-y").new_pool()
    a.put(1, 1, pages[0])
    b.put(1, 1, bytes(bytearray(pages[0])))
    assert b.stats().ops.dedup_hits == 0
    host.check()


def test_stats_count_every_outcome(host: tmem.Host,
                                   pages: list[bytes]) -> None:
    client = host.client("a")
    pool = client.new_pool()
    pool.put(1, 1, pages[0])
    pool.put(1, 1, pages[1])
    pool.get(1, 1)
    pool.get(1, 1)
    pool.flush_page(1, 5)
    pool.flush_object(3)
    ops = client.stats().ephemeral_ops
    assert (ops.puts, ops.puts_stored, ops.dup_replaced) == (2, 2, 1)
    assert (ops.gets, ops.gets_found) == (2, 1)
    assert (ops.flushes, ops.flushes_found) == (1, 0)
    assert (ops.object_flushes, ops.object_flushes_found) == (1, 0)
    pool.destroy()
    assert client.stats().ephemeral_ops == ops  # kept after destroy
    client.close()
    assert host.stats().ephemeral_ops == ops  # kept after close


def test_snapshot_is_frozen_and_clock_stamped(pages: list[bytes]) -> None:
    now = [100.0]
    host = tmem.Host(clock=lambda: now[0])
    host.client("a").new_pool().put(1, 1, pages[0])
    snap = host.snapshot()
    assert snap.host.taken_at == 100.0
    assert len(snap.clients) == 1 and len(snap.pools) == 1
    with pytest.raises(AttributeError):
        snap.host.used = 5  # type: ignore[misc]


def test_check_detects_corrupted_accounting(host: tmem.Host,
                                            pages: list[bytes]) -> None:
    client = host.client("a")
    client.new_pool().put(1, 1, pages[0])
    host.used += 1
    with pytest.raises(CheckFailed, match="host used bytes"):
        host.check()
    host.used -= 1
    client.ephemeral_pages += 1
    with pytest.raises(CheckFailed, match="billing"):
        host.check()
    client.ephemeral_pages -= 1


def test_many_threads_share_a_host_without_losing_a_page(
        pages: list[bytes]) -> None:
    host = tmem.Host(capacity="4MiB", compress="lz4", dedup=True)
    u = uuid.uuid4()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            client = host.client(f"t{n}")
            host.authorize(client, u)
            swap = client.new_pool(persistent=True)
            cache = client.new_pool()
            shared = client.new_pool(shared=True, uuid=u)
            for round_ in range(30):
                for i in range(16):
                    page = pages[(n * 16 + i + round_) % len(pages)]
                    assert swap.put(n, i, page)
                    cache.put(n, i, page)
                    shared.put(n, i, page)
                for i in range(16):
                    page = pages[(n * 16 + i + round_) % len(pages)]
                    assert swap.get(n, i) == page
                    assert cache.get(n, i) in (None, page)
                    assert shared.get(n, i) in (None, page)
                cache.flush_object(n)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    host.check()


def test_embedded_engine_provides_the_layer_interfaces(
        host: tmem.Host) -> None:
    from tmem.engine.api import ClientAPI, ControlAPI, PoolAPI

    client: ClientAPI = host.client("a")
    pool: PoolAPI = client.new_pool()
    control: ControlAPI = host
    assert pool.pool_id == 0 and control.freeable() == 0


def test_memory_flows_from_an_idle_client_to_a_busy_one(
        pages: list[bytes]) -> None:
    host = raw_host(100)
    busy = host.client("busy").new_pool()
    resting = host.client("resting").new_pool()
    for i in range(50):
        resting.put(1, i, pages[i])
    # busy and resting both hold their share; busy keeps going alone
    for n in range(600):
        busy.put(2, n, pages[n % 300 + 100])
    assert resting.stats().content.pages < 10
    assert busy.stats().content.pages > 90
    host.check()


def test_a_client_that_wakes_up_regains_its_weighted_share(
        pages: list[bytes]) -> None:
    host = raw_host(100)
    busy = host.client("busy").new_pool()
    waking = host.client("waking").new_pool()
    for n in range(400):
        busy.put(2, n, pages[n % 300])
    assert busy.stats().content.pages == 100
    for round_ in range(30):
        for i in range(10):
            busy.put(3, round_ * 10 + i, pages[i])
            waking.put(1, round_ * 10 + i, pages[200 + i])
    assert 40 <= waking.stats().content.pages <= 60
    host.check()


def test_capacity_can_shrink_evicting_only_ephemeral_pages(
        pages: list[bytes]) -> None:
    host = raw_host(20)
    client = host.client("a")
    cache, swap = client.new_pool(), client.new_pool(persistent=True)
    for i in range(10):
        cache.put(1, i, pages[i])
        swap.put(1, i, pages[i])
    evicted = host.set_capacity(5 * RAW_EPHEMERAL)
    assert evicted > 0 and cache.stats().content.pages == 0
    assert swap.stats().content.pages == 10  # never evicted
    assert swap.put(2, 2, pages[0]) is False  # over capacity: refused
    host.set_capacity(40 * RAW_EPHEMERAL)
    assert swap.put(2, 2, pages[0])
    host.check()
