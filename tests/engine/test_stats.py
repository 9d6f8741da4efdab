"""Snapshots are faithful, frozen and survive a trip through plain dicts."""

from __future__ import annotations

import dataclasses

import tmem
from tmem.engine import stats


def test_live_counter_has_exactly_the_snapshot_fields() -> None:
    live = [f.name for f in dataclasses.fields(stats.OpCounter)]
    assert live == list(stats.OP_FIELDS)


def test_counts_add_field_by_field() -> None:
    a = stats.OpCounts(puts=1, gets=2)
    b = stats.OpCounts(puts=10, flushes=3)
    assert a + b == stats.OpCounts(puts=11, gets=2, flushes=3)


def test_snapshot_round_trips_through_dicts(pages: list[bytes]) -> None:
    host = tmem.Host()
    client = host.client("a")
    client.new_pool().put(1, 1, pages[0])
    client.new_pool(persistent=True).put(1, 1, pages[1])
    snap = host.snapshot()
    again = stats.from_dict(stats.Snapshot, stats.to_dict(snap))
    assert again == snap
    assert isinstance(again.clients[0].ephemeral_ops, stats.OpCounts)


def test_compression_ratio_reflects_stored_payload(
        pages: list[bytes]) -> None:
    host = tmem.Host(compress="zstd")
    pool = host.client("a").new_pool(persistent=True)
    for i in range(100):
        pool.put(1, i, pages[i])
    ratio = host.stats().compression_ratio
    assert 1.2 < ratio < 20
    assert tmem.Host().stats().compression_ratio == 1.0
