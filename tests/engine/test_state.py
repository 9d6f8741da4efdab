"""Saved state round-trips exactly, and a bad stream changes nothing."""

from __future__ import annotations

import io
import struct
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmem
from tmem import LimitExceeded, StreamError
from tmem.engine import state

_PAGES = [*tmem.corpus.pages(48, distinct=True), bytes(4096), b"\x07" * 4096]


def save(host: tmem.Host, ref: object, ephemeral: bool = False) -> bytes:
    buffer = io.BytesIO()
    host.save(ref, buffer, ephemeral)  # type: ignore[arg-type]
    return buffer.getvalue()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(contents=st.dictionaries(
    st.tuples(st.integers(0, 2), st.integers(0, 2**192 - 2),
              st.integers(0, 2**32 - 1)),
    st.integers(0, len(_PAGES) - 1), max_size=40),
    compress=st.sampled_from(["none", "lz4", "zstd"]))
def test_random_pools_round_trip_through_a_stream(
        contents: dict[tuple[int, int, int], int], compress: str) -> None:
    source = tmem.Host(compress=compress)
    client = source.client("c", weight=42, cap="10MiB")
    pools = [client.new_pool(persistent=True) for _ in range(3)]
    for (p, oid, index), n in contents.items():
        assert pools[p].put(oid, index, _PAGES[n])
    stream = save(source, client)

    target = tmem.Host(compress="none")
    (restored,) = target.restore(io.BytesIO(stream))
    assert [p.pool_id for p in restored.pools()] == [0, 1, 2]
    for (p, oid, index), n in contents.items():
        assert restored.pool(p).get(oid, index) == _PAGES[n]
    stats = restored.stats()
    assert (stats.weight, stats.cap, stats.compress) == (42, 10 << 20,
                                                         compress)
    assert stats.persistent_pages == len(contents)
    target.check()


def test_compressed_pages_stay_compressed_in_the_stream() -> None:
    host = tmem.Host(compress="zstd")
    pool = host.client("c").new_pool(persistent=True)
    for i, page in enumerate(_PAGES[:40]):
        pool.put(1, i, page)
    stream = save(host, "c")
    assert len(stream) < 40 * 4096 * 0.8
    target = tmem.Host(compress="lz4")
    (client,) = target.restore(io.BytesIO(stream))
    content = client.pool(0).stats().content
    assert content.compressed_bytes == pool.stats().content.compressed_bytes


def test_settings_grants_frozen_and_ids_are_kept() -> None:
    host = tmem.Host(shared_auth=True)
    u = uuid.uuid4()
    client = host.client("c", weight=7, compress="zstd")
    host.authorize(client, u)
    client.new_pool()
    client.new_pool(shared=True, uuid=u)
    swap = client.new_pool(persistent=True)
    client.pool(0).destroy()
    swap.put(5, 5, _PAGES[0])
    host.freeze(client)
    target = tmem.Host()
    (again,) = target.restore(io.BytesIO(save(host, client)), as_name="d")
    stats = again.stats()
    assert (stats.name, stats.weight, stats.frozen, stats.compress) == (
        "d", 7, True, "zstd")
    assert [(p.pool_id, p.shared, p.persistent) for p in again.pools()] == \
        [(1, True, False), (2, False, True)]
    assert again.auth == {u}
    assert again.pool(2).get(5, 5) == _PAGES[0]


def test_ephemeral_pages_travel_only_when_asked() -> None:
    host = tmem.Host()
    client = host.client("c")
    client.new_pool().put(1, 1, _PAGES[0])
    (without,) = tmem.Host().restore(io.BytesIO(save(host, client)))
    assert without.pool(0).get(1, 1) is None
    (with_,) = tmem.Host().restore(io.BytesIO(save(host, client, True)))
    assert with_.pool(0).get(1, 1) == _PAGES[0]


def _stream() -> bytes:
    host = tmem.Host()
    pool = host.client("c").new_pool(persistent=True)
    for i, page in enumerate(_PAGES[:20]):
        pool.put(1, i, page)
    return save(host, "c")


def refused(stream: bytes, words: str) -> None:
    target = tmem.Host()
    with pytest.raises(StreamError, match=words):
        target.restore(io.BytesIO(stream))
    assert target.stats().clients == 0 and target.stats().used == 0


def test_truncated_streams_are_refused_whole() -> None:
    stream = _stream()
    for cut in (0, 5, 16, 100, len(stream) // 2, len(stream) - 1):
        refused(stream[:cut], "truncated|magic")


def test_corrupted_streams_are_refused_whole() -> None:
    stream = bytearray(_stream())
    for at in (20, 200, len(stream) // 2, len(stream) - 30):
        bad = bytearray(stream)
        bad[at] ^= 0x40
        refused(bytes(bad), "checksum|malformed|END|claims")


def test_foreign_and_newer_streams_are_refused() -> None:
    refused(b"PK\x03\x04" + bytes(100), "not a tmem state stream")
    stream = bytearray(_stream())
    struct.pack_into("<H", stream, 8, 2)
    refused(bytes(stream), "version 2 is not supported")


def test_records_removed_from_the_middle_are_detected() -> None:
    stream = _stream()
    reader = state.StreamReader()
    reader.feed(stream)
    # drop the second record (the POOL) and keep the rest
    head = 12
    _kind, length = struct.unpack_from("<BI", stream, head)
    second = head + 5 + length + 4
    _, length2 = struct.unpack_from("<BI", stream, second)
    cut = stream[:second] + stream[second + 5 + length2 + 4:]
    refused(cut, "no POOL record|malformed|END")


def test_a_restore_that_does_not_fit_is_refused_whole() -> None:
    stream = _stream()
    small = tmem.Host(capacity=5 * 4096)
    other = small.client("other").new_pool(persistent=True)
    other.put(1, 1, _PAGES[0])
    with pytest.raises(LimitExceeded, match="nothing was restored"):
        small.restore(io.BytesIO(stream))
    assert small.stats().clients == 1
    small.check()


def test_restore_evicts_ephemeral_memory_to_fit() -> None:
    stream = _stream()
    host = tmem.Host(capacity=24 * 4400, compress="none")
    cache = host.client("cache").new_pool()
    for i, page in enumerate(_PAGES[:20]):
        cache.put(1, i, page)
    (client,) = host.restore(io.BytesIO(stream))
    assert client.pool(0).get(1, 3) == _PAGES[3]
    assert cache.stats().content.evictions > 0
    host.check()


def test_bogus_compressed_payload_is_refused() -> None:
    writer_out = io.BytesIO()
    writer = state.StreamWriter(writer_out.write)
    writer.client({"name": "x"})
    writer.pool(0, 0x01000001, None)
    writer.pages_of(0, iter([(1, 1, b"\x00\x10\x00\x00garbage")]))
    writer.end()
    refused(writer_out.getvalue(), "does not decompress|malformed")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_fuzzed_streams_only_raise_stream_errors(data: bytes,
                                                 chunk: int) -> None:
    reader = state.StreamReader()
    try:
        for at in range(0, len(data), chunk):
            reader.feed(data[at:at + chunk])
        reader.finish()
    except StreamError:
        pass


def test_bytes_after_the_end_record_are_refused() -> None:
    refused(_stream() + b"junk", "after its END record")
    refused(_stream() * 2, "after its END record")


@pytest.mark.parametrize("name", ["", "two\nlines"])
def test_a_restore_name_must_be_a_client_name(name: str) -> None:
    target = tmem.Host()
    with pytest.raises(tmem.InvalidArgument, match="restore name"):
        target.restore(io.BytesIO(_stream()), as_name=name)
    assert target.stats().clients == 0
