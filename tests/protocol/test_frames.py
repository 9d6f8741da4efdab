"""Request bodies decode to what the client encoded, and every broken
body becomes a BadRequest naming the rule."""

from __future__ import annotations

import struct
import uuid

import pytest

from tmem import (
    ConnectionLost,
    InvalidArgument,
    LimitExceeded,
    ProtocolError,
    TmemError,
)
from tmem.client import calls
from tmem.engine import errors
from tmem.protocol import frames
from tmem.protocol.frames import (
    BadRequest,
    FlushObject,
    HandlesOp,
    Hello,
    NewPool,
    Op,
    PageOp,
    Put,
    PutMany,
    Status,
)


def decode(call: calls.Call[object], request_id: int = 7) -> object:
    body = memoryview(b"".join(call.parts))
    return frames.decode_request(call.opcode, request_id, body)


def test_put_round_trips_with_a_192_bit_oid(pages: list[bytes]) -> None:
    oid = (1 << 191) + 12345
    request = decode(calls.put(3, oid, 2**32 - 1, pages[0]))
    assert request == Put(7, 3, oid, 2**32 - 1, pages[0])


def test_get_and_flush_round_trip() -> None:
    assert decode(calls.get(1, (5, 6, 7), 9)) == PageOp(
        7, Op.GET, 1, 5 | 6 << 64 | 7 << 128, 9)
    assert decode(calls.flush_page(2, 8, 1)) == PageOp(
        7, Op.FLUSH_PAGE, 2, 8, 1)
    assert decode(calls.flush_object(4, 2**100)) == FlushObject(7, 4, 2**100)


def test_batches_round_trip(pages: list[bytes]) -> None:
    items = [(i * 1000, i, pages[i]) for i in range(40)]
    (put_call,) = calls.put_many(5, items, 1024)
    assert decode(put_call) == PutMany(7, 5, items)
    handles = [(o, i) for o, i, _ in items]
    (get_call,) = calls.get_many(5, handles, 1024)
    assert decode(get_call) == HandlesOp(7, Op.GET_MANY, 5, handles)


def test_batches_are_cut_at_the_limit(pages: list[bytes]) -> None:
    items = [(1, i, pages[i % 10]) for i in range(70)]
    cut = calls.put_many(0, items, 32)
    assert [len(c.parts) - 2 for c in cut] == [32, 32, 6]


def test_new_pool_and_hello_round_trip() -> None:
    u = uuid.uuid4()
    assert decode(calls.new_pool(False, True, u)) == NewPool(
        7, 0x01000002, u)
    assert decode(calls.new_pool(False, True, uuid.UUID(int=0))) == \
        NewPool(7, 0x01000002, uuid.UUID(int=0))
    body = frames.encode_hello("guest-ü", b"secret", b"r" * 16, True)
    assert frames.decode_request(Op.HELLO, 1, memoryview(body)) == Hello(
        1, "guest-ü", b"secret", b"r" * 16, True)


def bad(opcode: int, body: bytes) -> BadRequest:
    request = frames.decode_request(opcode, 9, memoryview(body))
    assert isinstance(request, BadRequest), request
    assert request.request_id == 9
    return request


@pytest.mark.parametrize("opcode, body, words", [
    (Op.PUT, bytes(32 + 4095), "PUT body of 4127 bytes"),
    (Op.PUT, bytes(32 + 4097), "must be 4128"),
    (Op.GET, bytes(10), "GET body of 10 bytes"),
    (Op.NEW_POOL, bytes(3), "NEW_POOL body of 3 bytes"),
    (Op.CLOSE, b"x", "CLOSE body of 1 bytes"),
    (Op.HELLO, b"\x05ab", "HELLO body of 3 bytes"),
    (Op.SNAPSHOT, b"[1]", "must be a JSON object"),
    (Op.FREEZE, b"\xff", "not JSON"),
    (99, b"", "opcode 99 is unknown"),
])
def test_malformed_bodies_become_bad_requests(opcode: int, body: bytes,
                                              words: str) -> None:
    request = bad(opcode, body)
    assert isinstance(request.error, ProtocolError)
    assert words in str(request.error)


def test_oversized_batch_is_refused_as_a_limit() -> None:
    body = struct.pack("<II", 0, frames.MAX_BATCH + 1)
    request = bad(Op.GET_MANY, body)
    assert isinstance(request.error, LimitExceeded)
    assert "1025 items exceeds the batch limit 1024" in str(request.error)


def test_batch_count_must_match_the_body() -> None:
    body = struct.pack("<II", 0, 3) + bytes(28 * 2)
    assert "GET_MANY body" in str(bad(Op.GET_MANY, body).error)


def test_non_utf8_client_name_is_an_invalid_argument() -> None:
    body = b"\x02\xff\xfe" + b"\x00" + bytes(16) + b"\x00"
    assert isinstance(bad(Op.HELLO, body).error, InvalidArgument)


def test_every_status_is_one_exception_class() -> None:
    classes = list(frames.STATUS_ERRORS.values())
    assert len(set(classes)) == len(classes) == len(Status) - 1
    for status, cls in frames.STATUS_ERRORS.items():
        assert frames.status_of(cls("x")) == status
        error = frames.error_of(status, "boom")
        assert type(error) is cls and str(error) == "boom"


def test_every_error_class_but_the_clients_own_crosses_the_wire() -> None:
    defined = {cls for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, TmemError)}
    assert defined - set(frames.STATUS_ERRORS.values()) == {
        TmemError, ConnectionLost}


def test_error_reply_carries_status_and_one_line_message() -> None:
    reply = frames.error_reply(Op.PUT, 5, InvalidArgument("bad\nvalue"))
    length, version, opcode, flags, rid = frames.HEADER.unpack_from(reply)
    assert (version, opcode, flags, rid) == (1, Op.PUT | 0x80, 0, 5)
    assert reply[12] == Status.INVALID_ARGUMENT
    assert reply[13:] == b"bad value"
    assert length == len(reply) - 4


def test_reply_decoders_refuse_malformed_bodies() -> None:
    with pytest.raises(ProtocolError):
        frames.decode_pages(b"\x01\x00", 2)
    with pytest.raises(ProtocolError):
        frames.decode_pages(b"\x02", 1)
    with pytest.raises(ProtocolError):
        frames.decode_flags(b"\x01", 2)
    with pytest.raises(ProtocolError):
        frames.decode_welcome(b"short")
    with pytest.raises(ProtocolError):
        frames.decode_pools(b"x" * 5)


def test_deeply_nested_json_is_a_protocol_error_not_a_crash() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    request = frames.decode_request(Op.FREEZE, 1, memoryview(
        b'{"a":' + nested + b"}"))
    assert isinstance(request, BadRequest)
    assert "not JSON" in str(request.error)
    with pytest.raises(errors.ProtocolError, match="not JSON"):
        frames.decode_json(nested)
