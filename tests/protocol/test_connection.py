"""Framing and per-connection rules, including a fuzz of the decoder."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tmem import ProtocolError
from tmem.client import calls
from tmem.protocol import frames
from tmem.protocol.connection import (
    ClientConnection,
    FrameBuffer,
    ServerConnection,
    State,
)
from tmem.protocol.frames import BadRequest, Hello, Op, Put, Request

_HELLO_BODY = frames.encode_hello("ab", b"", None)
HELLO = frames.header(Op.HELLO, 1, len(_HELLO_BODY)) + _HELLO_BODY


def frame(opcode: int, body: bytes, request_id: int = 2,
          flags: int = 0) -> bytes:
    return frames.HEADER.pack(8 + len(body), 1, opcode, flags,
                              request_id) + body


def requests_of(data: bytes, chunk: int = 10**9) -> list[Request]:
    conn = ServerConnection()
    out: list[Request] = []
    for start in range(0, len(data), chunk):
        conn.receive_data(data[start:start + chunk])
        while (request := conn.next_request()) is not None:
            out.append(request)
    return out


def test_frames_split_anywhere_decode_the_same(pages: list[bytes]) -> None:
    put = calls.put(0, 1, 2, pages[0])
    data = HELLO + frame(Op.PUT, b"".join(put.parts))
    whole = requests_of(data)
    assert isinstance(whole[0], Hello) and isinstance(whole[1], Put)
    for chunk in (1, 7, 12, 4000):
        assert requests_of(data, chunk) == whole


def test_first_request_must_be_hello() -> None:
    conn = ServerConnection()
    conn.receive_data(frame(Op.PING, b""))
    request = conn.next_request()
    assert isinstance(request, BadRequest)
    assert "first request must be HELLO" in str(request.error)
    assert conn.state is State.FINISHED


def test_a_second_hello_is_refused_but_the_connection_goes_on() -> None:
    out = requests_of(HELLO + HELLO + frame(Op.PING, b""))
    assert isinstance(out[1], BadRequest)
    assert "already received" in str(out[1].error)
    assert out[2].opcode == Op.PING


def test_reserved_flags_and_reply_opcodes_are_refused() -> None:
    out = requests_of(HELLO + frame(Op.PING, b"", flags=4)
                      + frame(Op.PING | 0x80, b""))
    assert "reserved bits" in str(out[1].error)  # type: ignore[union-attr]
    assert "is a reply" in str(out[2].error)  # type: ignore[union-attr]


def test_unframeable_bytes_raise_and_finish_the_connection() -> None:
    for garbage in (struct.pack("<IBBHI", 3, 1, 1, 0, 0),
                    struct.pack("<IBBHI", 9 << 20, 1, 1, 0, 0),
                    struct.pack("<IBBHI", 8, 2, 1, 0, 0)):
        conn = ServerConnection()
        conn.receive_data(garbage)
        try:
            conn.next_request()
        except ProtocolError:
            assert conn.state is State.FINISHED
        else:
            raise AssertionError(f"{garbage!r} was accepted")


def test_buffer_survives_a_body_view_held_elsewhere() -> None:
    buffer = FrameBuffer()
    buffer.feed(frame(Op.PING, b"abc") * 2)
    held = buffer.next_frame()
    assert held is not None
    buffer.feed(frame(Op.PING, b"xyz"))
    assert bytes(held.body) == b"abc"
    second, third = buffer.next_frame(), buffer.next_frame()
    assert second is not None and third is not None
    assert bytes(third.body) == b"xyz"


def test_client_connection_reads_replies_and_refuses_requests() -> None:
    conn = ClientConnection()
    rid, parts = conn.request(Op.PING)
    assert frames.HEADER.unpack_from(parts[0])[4] == rid
    conn.receive_data(b"".join(frames.ok_reply(Op.PING, rid, b"zz")))
    reply = conn.next_reply()
    assert reply is not None
    assert (reply.opcode, reply.request_id, reply.status, reply.body) == \
        (Op.PING, rid, 0, b"zz")
    conn.receive_data(frame(Op.PING, b"\0"))
    try:
        conn.next_reply()
    except ProtocolError as error:
        assert "is not a reply" in str(error)
    else:
        raise AssertionError("a request was taken as a reply")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=64),
    st.builds(frame, st.integers(0, 255), st.binary(max_size=200),
              st.integers(0, 2**32 - 1), st.sampled_from([0, 0, 0, 1])),
), max_size=12), st.integers(1, 50))
def test_fuzzed_input_yields_requests_or_protocol_errors_only(
        pieces: list[bytes], chunk: int) -> None:
    conn = ServerConnection()
    data = HELLO + b"".join(pieces)
    try:
        for start in range(0, len(data), chunk):
            conn.receive_data(data[start:start + chunk])
            while conn.next_request() is not None:
                assert conn.state is not State.FINISHED
    except ProtocolError:
        assert conn.state is State.FINISHED
