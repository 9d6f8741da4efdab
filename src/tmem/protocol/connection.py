"""Bytes in, frames out: buffering and the per-connection rules, no I/O.

The daemon and the client library are thin drivers around these classes:
they hand over whatever bytes arrive (`receive_data`) and write whatever
bytes the classes return.  Nothing here touches a socket, a clock or a log.

Rules:
- A length field below 8 or above the frame limit, or a version other than
  PROTOCOL_VERSION, cannot be framed: `ProtocolError` is raised and the
  connection is finished (the driver closes it).
- A well-framed request that breaks a rule (unknown opcode, reserved flag
  bits set, a body of the wrong size, ids out of range) becomes a
  `BadRequest`: the driver replies with its status and carries on.
- The first request must be HELLO and there is only one; anything else
  first finishes the connection after its error reply.
- Bodies handed to decoders are views into the receive buffer; decoders
  copy what they keep, so the buffer may be compacted later.  If a view
  is still held somewhere the buffer is simply replaced, never corrupted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tmem.engine.errors import ProtocolError
from tmem.protocol import frames
from tmem.protocol.frames import (
    HEADER,
    HEADER_SIZE,
    MAX_FRAME,
    PROTOCOL_VERSION,
    REPLY,
    BadRequest,
    Hello,
    Op,
    Request,
)


@dataclass(frozen=True, slots=True)
class Frame:
    opcode: int
    flags: int
    request_id: int
    body: memoryview


class FrameBuffer:
    """Accumulates received bytes and cuts them into frames."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._data = bytearray()
        self._start = 0
        self._max_frame = max_frame

    def __len__(self) -> int:
        return len(self._data) - self._start

    def feed(self, data: bytes) -> None:
        try:
            if self._start:
                del self._data[:self._start]
            self._data += data
        except BufferError:
            # a body view is still alive: leave it its buffer, take a copy
            self._data = self._data[self._start:] + data
        self._start = 0

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until more bytes arrive."""
        if len(self) < HEADER_SIZE:
            return None
        length, version, opcode, flags, request_id = HEADER.unpack_from(
            self._data, self._start)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"frame version {version} is not {PROTOCOL_VERSION}")
        if not 8 <= length <= self._max_frame:
            raise ProtocolError(
                f"frame length {length} is outside 8..{self._max_frame}")
        total = 4 + length
        if len(self) < total:
            return None
        body = memoryview(self._data)[
            self._start + HEADER_SIZE:self._start + total]
        self._start += total
        return Frame(opcode, flags, request_id, body)


class State(enum.Enum):
    AWAIT_HELLO = "await hello"
    READY = "ready"
    FINISHED = "finished"


class ServerConnection:
    """The daemon's side of one connection."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.state = State.AWAIT_HELLO
        self._buffer = FrameBuffer(max_frame)

    def receive_data(self, data: bytes) -> None:
        self._buffer.feed(data)

    def next_request(self) -> Request | None:
        """The next request, or None until more bytes arrive.

        Raises:
            ProtocolError: the bytes cannot be framed; the connection is
                finished.
        """
        if self.state is State.FINISHED:
            return None
        try:
            frame = self._buffer.next_frame()
        except ProtocolError:
            self.state = State.FINISHED
            raise
        if frame is None:
            return None
        request = self._decode(frame)
        frame.body.release()
        return self._check_order(request)

    def _decode(self, frame: Frame) -> Request:
        if frame.flags:
            return BadRequest(frame.request_id, frame.opcode, ProtocolError(
                f"frame flags {frame.flags:#06x} set reserved bits, which "
                "must be zero"))
        if frame.opcode & REPLY:
            return BadRequest(frame.request_id, frame.opcode, ProtocolError(
                f"opcode {frame.opcode:#04x} is a reply; clients send "
                "requests"))
        return frames.decode_request(frame.opcode, frame.request_id,
                                     frame.body)

    def _check_order(self, request: Request) -> Request:
        is_hello = isinstance(request, Hello) or (
            isinstance(request, BadRequest) and request.opcode == Op.HELLO)
        if self.state is State.AWAIT_HELLO and not is_hello:
            self.state = State.FINISHED
            return BadRequest(request.request_id, request.opcode,
                              ProtocolError("the first request must be "
                                            "HELLO"))
        if self.state is State.READY and is_hello:
            return BadRequest(request.request_id, Op.HELLO, ProtocolError(
                "HELLO was already received on this connection"))
        if isinstance(request, BadRequest) and is_hello:
            self.state = State.FINISHED
        elif is_hello:
            self.state = State.READY
        return request

    def finish(self) -> None:
        """No more requests will be taken (CLOSE, refused HELLO)."""
        self.state = State.FINISHED


@dataclass(frozen=True, slots=True)
class Reply:
    opcode: int
    """The request's opcode (the REPLY bit removed)."""
    request_id: int
    status: int
    body: bytes


class ClientConnection:
    """The client library's side of one connection."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = FrameBuffer(max_frame)
        self._next_id = 1

    def request(self, opcode: Op, *parts: bytes) -> tuple[int, list[bytes]]:
        """A request frame as buffers to send; returns its request id."""
        request_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        length = sum(len(p) for p in parts)
        return request_id, [frames.header(opcode, request_id, length),
                            *parts]

    def receive_data(self, data: bytes) -> None:
        self._buffer.feed(data)

    def next_reply(self) -> Reply | None:
        """The next reply, or None until more bytes arrive.

        Raises:
            ProtocolError: the server sent something that is not a reply.
        """
        frame = self._buffer.next_frame()
        if frame is None:
            return None
        body = bytes(frame.body)
        frame.body.release()
        return reply_of(frame.opcode, frame.flags, frame.request_id, body)


def body_length(header: bytes, max_frame: int = MAX_FRAME) -> int:
    """The body length a 12-byte frame header announces (for drivers that
    read a reply in two exact reads); raises ProtocolError as framing
    would."""
    length, version, _, _, _ = HEADER.unpack(header)
    if version != PROTOCOL_VERSION or not 8 <= length <= max_frame:
        raise ProtocolError(
            f"frame header {header.hex()} cannot be framed: version "
            f"{version} (must be {PROTOCOL_VERSION}), length {length} "
            f"(must be 8..{max_frame})")
    return int(length) - 8


def reply_of(opcode: int, flags: int, request_id: int,
             body: bytes | bytearray) -> Reply:
    """Check that a frame is a reply; split off its status."""
    if not opcode & REPLY or flags or not body:
        raise ProtocolError(
            f"frame with opcode {opcode:#04x} and flags {flags:#06x} is "
            "not a reply")
    return Reply(opcode & ~REPLY, request_id, body[0],
                 bytes(memoryview(body)[1:]))


def reply_from(header: bytes, status: bytes, rest: bytes) -> Reply:
    """The reply made of its header, its status byte and the rest of the
    body (for drivers that read a reply in exact pieces)."""
    _, _, opcode, flags, request_id = HEADER.unpack(header)
    if not opcode & REPLY or flags or len(status) != 1:
        raise ProtocolError(
            f"frame with opcode {opcode:#04x} and flags {flags:#06x} is "
            "not a reply")
    return Reply(opcode & ~REPLY, request_id, status[0], rest)
