"""Bad input gets an error status or, if it cannot be framed, a closed
connection; the daemon keeps serving and nobody else's pages change."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmem
from tmem.protocol import frames
from tmem.protocol.connection import ClientConnection, Reply
from tmem.protocol.frames import Op, Status
from tmem.server.daemon import Daemon
from tmem.testing import daemon_in_thread


class Raw:
    """A hand-driven connection that can send anything."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.conn = ClientConnection()

    def hello(self) -> None:
        body = frames.encode_hello("raw", b"", None)
        self.send(frames.header(Op.HELLO, 1, len(body)) + body)
        assert self.reply().status == Status.OK

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, opcode: int, body: bytes, flags: int = 0) -> Reply:
        self.send(frames.HEADER.pack(8 + len(body), 1, opcode, flags, 9)
                  + body)
        return self.reply()

    def reply(self) -> Reply:
        while (reply := self.conn.next_reply()) is None:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionResetError("closed by the daemon")
            self.conn.receive_data(data)
        return reply

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.fixture
def victim(address: str, pages: list[bytes]) -> Iterator[tmem.Pool]:
    """Another client's persistent pages, checked by `intact`."""
    client = tmem.connect(address, name="victim")
    pool = client.new_pool(persistent=True)
    assert all(pool.put_many([(1, i, pages[i]) for i in range(16)]))
    yield pool  # type: ignore[misc]
    client.close()


def intact(pool: tmem.Pool, pages: list[bytes]) -> bool:
    return pool.get_many([(1, i) for i in range(16)]) == pages[:16]


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    struct.pack("<IBBHI", 2, 1, 1, 0, 0),
    struct.pack("<IBBHI", 1 << 30, 1, 4, 0, 0),
    struct.pack("<IBBHI", 8, 9, 1, 0, 0),
])
def test_unframeable_garbage_closes_only_that_connection(
        daemon: Daemon, victim: tmem.Pool, pages: list[bytes],
        garbage: bytes) -> None:
    raw = Raw(daemon.config.socket)
    raw.send(garbage)
    assert raw.closed()
    assert intact(victim, pages)
    assert daemon.connections.protocol_errors == 1


def test_bad_requests_get_statuses_and_the_connection_goes_on(
        daemon: Daemon, victim: tmem.Pool, pages: list[bytes]) -> None:
    raw = Raw(daemon.config.socket)
    raw.hello()
    new = raw.frame(Op.NEW_POOL, frames.encode_new_pool(0x01000001, None))
    assert new.status == Status.OK
    (pool_id, _, _), = frames.decode_pools(new.body)
    handle = struct.pack("<IQQQI", pool_id, 1, 0, 0, 0)
    cases = [
        (99, b"", Status.PROTOCOL_ERROR, b"unknown"),
        (Op.PUT, handle + bytes(100), Status.PROTOCOL_ERROR, b"length"),
        (Op.PUT, struct.pack("<IQQQI", 7, 1, 0, 0, 0) + pages[0],
         Status.NO_SUCH_POOL, b"pool id 7"),
        (Op.PUT, struct.pack("<IQQQI", 2**32 - 1, 1, 0, 0, 0) + pages[0],
         Status.NO_SUCH_POOL, b"out of range"),
        (Op.GET, struct.pack("<IQQQI", pool_id, *(2**64 - 1,) * 3, 0),
         Status.INVALID_ARGUMENT, b"out of range"),
        (Op.NEW_POOL, frames.encode_new_pool(0x01000101, None),
         Status.INVALID_ARGUMENT, b"reserved bits"),
        (Op.GET_MANY, struct.pack("<II", pool_id, 5000),
         Status.LIMIT_EXCEEDED, b"batch limit"),
        (Op.FREEZE, b'{"client": []}', Status.INVALID_ARGUMENT, b"client"),
        (Op.HELLO, b"", Status.PROTOCOL_ERROR, b"HELLO"),
    ]
    for opcode, body, status, words in cases:
        reply = raw.frame(opcode, body)
        assert (reply.status, words in reply.body) == (status, True), \
            (opcode, reply)
    assert raw.frame(Op.PING, b"", flags=1).status == Status.PROTOCOL_ERROR
    assert raw.frame(Op.PING, b"").status == Status.OK
    assert intact(victim, pages)


def test_requests_before_hello_end_the_connection(daemon: Daemon) -> None:
    raw = Raw(daemon.config.socket)
    reply = raw.frame(Op.PING, b"")
    assert reply.status == Status.PROTOCOL_ERROR
    assert raw.closed()


def test_a_flood_of_pools_hits_the_limit(address: str) -> None:
    with tmem.connect(address, name="flood") as client:
        for _ in range(16):
            client.new_pool()
        with pytest.raises(tmem.LimitExceeded, match="16 pools"):
            client.new_pool()


def test_a_peer_that_never_reads_does_not_stall_others(
        daemon: Daemon, victim: tmem.Pool, pages: list[bytes]) -> None:
    raw = Raw(daemon.config.socket)
    raw.hello()
    raw.sock.setblocking(False)
    ping = frames.header(Op.PING, 3, 0)
    sent = 0
    try:
        for _ in range(200_000):
            sent += raw.sock.send(ping * 256)
    except BlockingIOError:
        pass  # the daemon stopped reading from us: good
    assert sent > 0
    assert intact(victim, pages)  # the victim is served meanwhile


def test_connections_beyond_the_limit_are_refused(sockdir: Path) -> None:
    with daemon_in_thread(sockdir / "m.sock", max_connections=2) as d:
        a = tmem.connect(f"unix:{d.config.socket}", name="a")
        b = tmem.connect(f"unix:{d.config.socket}", name="b")
        with pytest.raises(tmem.LimitExceeded, match="max_connections"):
            tmem.connect(f"unix:{d.config.socket}", name="c")
        a.close()
        b.close()
        assert (d.connections.accepted, d.connections.refused_busy) == (2, 1)


_opcodes = st.sampled_from([int(op) for op in Op] + [0, 16, 31, 127, 200])


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_opcodes, st.binary(max_size=300),
                          st.sampled_from([0, 0, 0, 2])), max_size=8),
       st.binary(max_size=40))
def test_fuzzed_frames_never_hurt_the_daemon_or_other_clients(
        daemon: Daemon, victim: tmem.Pool, pages: list[bytes],
        requests: list[tuple[int, bytes, int]], tail: bytes) -> None:
    raw = Raw(daemon.config.socket)
    raw.hello()
    try:
        for opcode, body, flags in requests:
            reply = raw.frame(opcode, body, flags)
            assert reply.status in set(Status)
        raw.send(tail)
    except (ConnectionResetError, BrokenPipeError, TimeoutError):
        pass  # a CLOSE, or garbage that could not be framed
    finally:
        raw.sock.close()
    assert intact(victim, pages)
