"""The wire format: frame header, opcodes, statuses and body layouts.

Every frame, both directions, is a 12-byte little-endian header and a body:

    u32 length      bytes after this field (8 + body length)
    u8  version     PROTOCOL_VERSION
    u8  opcode      the request's opcode; a reply sets bit 7 (REPLY)
    u16 flags       reserved: must be zero
    u32 request_id  chosen by the client, echoed by the reply

A reply body starts with a status byte.  On OK the opcode's reply layout
follows; otherwise a UTF-8 message (one line) follows.

Rules:
- Opcodes and statuses are never reused or renumbered; a retired one stays
  reserved.  Each status is exactly one exception class (`STATUS_ERRORS`).
- A handle is 28 bytes: the object id as three u64 words, least
  significant first, then the u32 index.  A page is exactly PAGE_SIZE.
- Control operations (admin) carry JSON objects; they are rare, and JSON
  keeps them readable and extensible.  The page path is fixed binary.
- Nothing here does I/O; connection.py frames and buffers.
"""

from __future__ import annotations

import enum
import json
import struct
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tmem.engine.errors import (
    Busy,
    CheckFailed,
    InvalidArgument,
    LimitExceeded,
    Moved,
    NoSuchClient,
    NoSuchPool,
    PermissionDenied,
    ProtocolError,
    ServerError,
    StreamError,
    SwapError,
    TmemError,
)
from tmem.engine.handles import FLAG_SHARED, PAGE_SIZE

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<IBBHI")
HEADER_SIZE = HEADER.size  # 12
LENGTH_FIELD = 4
MAX_FRAME = 8 << 20
"""Largest length field accepted; more is unframeable garbage."""
MAX_BATCH = 1024
"""Most pages or handles in one batched request."""
REPLY = 0x80

HANDLE = struct.Struct("<QQQI")
POOL_HANDLE = struct.Struct("<IQQQI")  # pool, oid words, index
POOL_OID = struct.Struct("<IQQQ")
POOL_COUNT = struct.Struct("<II")
U8 = struct.Struct("<B")
U32 = struct.Struct("<I")
NEW_POOL = struct.Struct("<I16s")
POOL_INFO = struct.Struct("<II16s")  # pool id, flags, uuid
WELCOME = struct.Struct("<iB16sIII")  # session id (< 0: control)
U64_MASK = (1 << 64) - 1


class Op(enum.IntEnum):
    """Request opcodes.  Never renumber; retire by leaving a gap."""

    HELLO = 1
    NEW_POOL = 2
    DESTROY_POOL = 3
    PUT = 4
    GET = 5
    FLUSH_PAGE = 6
    FLUSH_OBJECT = 7
    PUT_MANY = 8
    GET_MANY = 9
    FLUSH_MANY = 10
    LIST_POOLS = 11
    POOL_STATS = 12
    CLIENT_STATS = 13
    CLOSE = 14
    PING = 15
    # control operations (admin only), JSON bodies
    SNAPSHOT = 32
    FREEZE = 33
    THAW = 34
    SET_WEIGHT = 35
    SET_CAP = 36
    SET_COMPRESS = 37
    AUTHORIZE = 38
    REVOKE = 39
    FREEABLE = 40
    FLUSH_MEMORY = 41
    SAVE = 42
    RESTORE = 43
    MIGRATE = 44
    RESTORE_BEGIN = 45
    RESTORE_DATA = 46
    RESTORE_COMMIT = 47
    RESTORE_ABORT = 48
    SET_CAPACITY = 49
    SWAP_ON = 50
    SWAP_OFF = 51
    SWAP_STATUS = 52
    DROP = 53


CONTROL_OPS = frozenset(op for op in Op if op >= 32)


class Status(enum.IntEnum):
    """Reply statuses; each but OK is one exception class."""

    OK = 0
    INVALID_ARGUMENT = 1
    NO_SUCH_POOL = 2
    NO_SUCH_CLIENT = 3
    PERMISSION_DENIED = 4
    LIMIT_EXCEEDED = 5
    BUSY = 6
    PROTOCOL_ERROR = 7
    STREAM_ERROR = 8
    CHECK_FAILED = 9
    SERVER_ERROR = 10
    MOVED = 11
    SWAP_ERROR = 12


STATUS_ERRORS: dict[Status, type[TmemError]] = {
    Status.INVALID_ARGUMENT: InvalidArgument,
    Status.NO_SUCH_POOL: NoSuchPool,
    Status.NO_SUCH_CLIENT: NoSuchClient,
    Status.PERMISSION_DENIED: PermissionDenied,
    Status.LIMIT_EXCEEDED: LimitExceeded,
    Status.BUSY: Busy,
    Status.PROTOCOL_ERROR: ProtocolError,
    Status.STREAM_ERROR: StreamError,
    Status.CHECK_FAILED: CheckFailed,
    Status.SERVER_ERROR: ServerError,
    Status.MOVED: Moved,
    Status.SWAP_ERROR: SwapError,
}
ERROR_STATUS = {cls: status for status, cls in STATUS_ERRORS.items()}


def status_of(error: TmemError) -> Status:
    """The wire status for an exception (its most specific class)."""
    for cls in type(error).__mro__:
        status = ERROR_STATUS.get(cls)
        if status is not None:
            return status
    return Status.SERVER_ERROR


def error_of(status: int, message: str) -> TmemError:
    """The exception a non-OK status stands for."""
    try:
        return STATUS_ERRORS[Status(status)](message)
    except ValueError:
        return ProtocolError(f"reply status {status} is unknown")


# -- frames ------------------------------------------------------------------

def header(opcode: int, request_id: int, body_length: int) -> bytes:
    """The 12-byte header of a frame whose body has `body_length` bytes."""
    return HEADER.pack(8 + body_length, PROTOCOL_VERSION, opcode, 0,
                       request_id)


def reply_header(opcode: int, request_id: int, body_length: int) -> bytes:
    return header(opcode | REPLY, request_id, body_length)


def error_reply(opcode: int, request_id: int, error: TmemError) -> bytes:
    """A whole reply frame carrying an error status and its message."""
    message = str(error).replace("\n", " ").encode()[:4000]
    return reply_header(opcode, request_id, 1 + len(message)) + \
        U8.pack(status_of(error)) + message


def ok_reply(opcode: int, request_id: int, *parts: bytes) -> list[bytes]:
    """The buffers of an OK reply frame (header, status, parts)."""
    length = 1 + sum(len(p) for p in parts)
    return [reply_header(opcode, request_id, length), b"\0", *parts]


# -- handles -------------------------------------------------------------------

def pack_handle(oid: int, index: int) -> bytes:
    if oid <= U64_MASK:  # the common case, two shifts cheaper
        return HANDLE.pack(oid, 0, 0, index)
    return HANDLE.pack(oid & U64_MASK, (oid >> 64) & U64_MASK, oid >> 128,
                       index)


def oid_from_words(w0: int, w1: int, w2: int) -> int:
    return w0 | (w1 << 64) | (w2 << 128)


# -- request bodies (decoded by the server) ----------------------------------

@dataclass(frozen=True, slots=True)
class Hello:
    opcode: ClassVar[Op] = Op.HELLO
    request_id: int
    name: str
    token: bytes
    resume: bytes | None
    """A session's resume token, or None for a new session."""
    control: bool = False
    """True for a control-only session (an admin tool): no pools."""


@dataclass(frozen=True, slots=True)
class NewPool:
    opcode: ClassVar[Op] = Op.NEW_POOL
    request_id: int
    flags: int
    uuid: uuidlib.UUID | None


@dataclass(frozen=True, slots=True)
class PoolOp:
    """DESTROY_POOL, POOL_STATS: an operation on one pool."""

    request_id: int
    opcode: Op
    pool_id: int


@dataclass(frozen=True, slots=True)
class Put:
    opcode: ClassVar[Op] = Op.PUT
    request_id: int
    pool_id: int
    oid: int
    index: int
    page: bytes


@dataclass(frozen=True, slots=True)
class PageOp:
    """GET, FLUSH_PAGE: an operation on one handle."""

    request_id: int
    opcode: Op
    pool_id: int
    oid: int
    index: int


@dataclass(frozen=True, slots=True)
class FlushObject:
    opcode: ClassVar[Op] = Op.FLUSH_OBJECT
    request_id: int
    pool_id: int
    oid: int


@dataclass(frozen=True, slots=True)
class PutMany:
    opcode: ClassVar[Op] = Op.PUT_MANY
    request_id: int
    pool_id: int
    items: list[tuple[int, int, bytes]]


@dataclass(frozen=True, slots=True)
class HandlesOp:
    """GET_MANY, FLUSH_MANY: an operation on many handles."""

    request_id: int
    opcode: Op
    pool_id: int
    handles: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Simple:
    """LIST_POOLS, CLIENT_STATS, CLOSE, PING: no arguments."""

    request_id: int
    opcode: Op


@dataclass(frozen=True, slots=True)
class Control:
    """An admin operation with JSON arguments."""

    request_id: int
    opcode: Op
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RestoreData:
    """A piece of a state stream sent to a restore in progress."""

    opcode: ClassVar[Op] = Op.RESTORE_DATA
    request_id: int
    restore_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A well-framed request whose body breaks the rules: reply with the
    error and carry on."""

    request_id: int
    opcode: int
    error: TmemError


Request = (Hello | NewPool | PoolOp | Put | PageOp | FlushObject | PutMany
           | HandlesOp | Simple | Control | RestoreData | BadRequest)


def decode_request(opcode: int, request_id: int,
                   body: memoryview) -> Request:
    """Parse a request body; a broken body becomes a BadRequest."""
    try:
        op = Op(opcode)
    except ValueError:
        return BadRequest(request_id, opcode, ProtocolError(
            f"opcode {opcode} is unknown"))
    try:
        return _DECODERS[op](op, request_id, body)
    except (struct.error, IndexError):
        return BadRequest(request_id, opcode, ProtocolError(
            f"{op.name} body of {len(body)} bytes has the wrong length"))
    except TmemError as error:
        return BadRequest(request_id, opcode, error)


def _expect_length(op: Op, body: memoryview, length: int) -> None:
    if len(body) != length:
        raise ProtocolError(
            f"{op.name} body of {len(body)} bytes has the wrong length: "
            f"it must be {length}")


def _hello(op: Op, rid: int, body: memoryview) -> Request:
    raw = bytes(body)
    name_len = raw[0] if raw else 0
    token_at = 1 + name_len
    token_len = raw[token_at] if len(raw) > token_at else 0
    resume_at = token_at + 1 + token_len
    if not name_len or len(raw) != resume_at + 17 or raw[-1] > 1:
        raise ProtocolError(
            f"HELLO body of {len(raw)} bytes is malformed")
    name = raw[1:token_at]
    try:
        text = name.decode()
    except UnicodeDecodeError:
        raise InvalidArgument(
            f"client name {name!r} is not UTF-8") from None
    resume = raw[resume_at:resume_at + 16]
    return Hello(rid, text, raw[token_at + 1:resume_at],
                 None if resume == bytes(16) else resume, raw[-1] == 1)


def encode_hello(name: str, token: bytes, resume: bytes | None,
                 control: bool = False) -> bytes:
    raw = name.encode()
    if not 1 <= len(raw) <= 255 or len(token) > 255:
        raise InvalidArgument(
            f"client name {name!r} must be 1..255 bytes and the token at "
            "most 255")
    return (U8.pack(len(raw)) + raw + U8.pack(len(token)) + token
            + (resume or bytes(16)) + U8.pack(1 if control else 0))


def _new_pool(op: Op, rid: int, body: memoryview) -> Request:
    _expect_length(op, body, NEW_POOL.size)
    flags, raw = NEW_POOL.unpack(body)
    return NewPool(rid, flags, _uuid_field(flags, raw))


def _uuid_field(flags: int, raw: bytes) -> uuidlib.UUID | None:
    """A shared pool's uuid (any value); zeros mean none for the rest."""
    if flags & FLAG_SHARED or any(raw):
        return uuidlib.UUID(bytes=raw)
    return None


def encode_new_pool(flags: int, uuid: uuidlib.UUID | None) -> bytes:
    return NEW_POOL.pack(flags, bytes(16) if uuid is None else uuid.bytes)


def _pool_op(op: Op, rid: int, body: memoryview) -> Request:
    _expect_length(op, body, 4)
    return PoolOp(rid, op, U32.unpack(body)[0])


def _put(op: Op, rid: int, body: memoryview) -> Request:
    _expect_length(op, body, POOL_HANDLE.size + PAGE_SIZE)
    pool_id, w0, w1, w2, index = POOL_HANDLE.unpack_from(body)
    return Put(rid, pool_id, oid_from_words(w0, w1, w2), index,
               bytes(body[POOL_HANDLE.size:]))


def _page_op(op: Op, rid: int, body: memoryview) -> Request:
    _expect_length(op, body, POOL_HANDLE.size)
    pool_id, w0, w1, w2, index = POOL_HANDLE.unpack(body)
    return PageOp(rid, op, pool_id, oid_from_words(w0, w1, w2), index)


def _flush_object(op: Op, rid: int, body: memoryview) -> Request:
    _expect_length(op, body, POOL_OID.size)
    pool_id, w0, w1, w2 = POOL_OID.unpack(body)
    return FlushObject(rid, pool_id, oid_from_words(w0, w1, w2))


def _batch_header(op: Op, body: memoryview, per_item: int) -> tuple[int,
                                                                    int]:
    pool_id, count = POOL_COUNT.unpack_from(body)
    if count > MAX_BATCH:
        raise LimitExceeded(
            f"{op.name} of {count} items exceeds the batch limit "
            f"{MAX_BATCH}")
    _expect_length(op, body, POOL_COUNT.size + count * per_item)
    return pool_id, count


def _handles(body: memoryview, count: int) -> list[tuple[int, int]]:
    end = POOL_COUNT.size + count * HANDLE.size
    return [(w0 | (w1 << 64) | (w2 << 128), index)
            for w0, w1, w2, index in HANDLE.iter_unpack(
                body[POOL_COUNT.size:end])]


def _put_many(op: Op, rid: int, body: memoryview) -> Request:
    pool_id, count = _batch_header(op, body, HANDLE.size + PAGE_SIZE)
    handles = _handles(body, count)
    start = POOL_COUNT.size + count * HANDLE.size
    items = [(oid, index, bytes(body[at:at + PAGE_SIZE]))
             for (oid, index), at in zip(
                 handles, range(start, len(body), PAGE_SIZE), strict=True)]
    return PutMany(rid, pool_id, items)


def _handles_op(op: Op, rid: int, body: memoryview) -> Request:
    pool_id, count = _batch_header(op, body, HANDLE.size)
    return HandlesOp(rid, op, pool_id, _handles(body, count))


def encode_batch_head(pool_id: int, count: int) -> bytes:
    return POOL_COUNT.pack(pool_id, count)


def _simple(op: Op, rid: int, body: memoryview) -> Request:
    _expect_length(op, body, 0)
    return Simple(rid, op)


def _control(op: Op, rid: int, body: memoryview) -> Request:
    try:
        args = json.loads(bytes(body) or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(f"{op.name} body is not JSON") from None
    if not isinstance(args, dict):
        raise ProtocolError(f"{op.name} body must be a JSON object")
    return Control(rid, op, args)


def _restore_data(op: Op, rid: int, body: memoryview) -> Request:
    (restore_id,) = U32.unpack_from(body)
    return RestoreData(rid, restore_id, bytes(body[4:]))


def encode_restore_data(restore_id: int, data: bytes) -> list[bytes]:
    return [U32.pack(restore_id), data]


_DECODERS = {
    Op.HELLO: _hello, Op.NEW_POOL: _new_pool, Op.DESTROY_POOL: _pool_op,
    Op.PUT: _put, Op.GET: _page_op, Op.FLUSH_PAGE: _page_op,
    Op.FLUSH_OBJECT: _flush_object, Op.PUT_MANY: _put_many,
    Op.GET_MANY: _handles_op, Op.FLUSH_MANY: _handles_op,
    Op.LIST_POOLS: _simple, Op.POOL_STATS: _pool_op,
    Op.CLIENT_STATS: _simple, Op.CLOSE: _simple, Op.PING: _simple,
    **{op: _control for op in CONTROL_OPS},
    Op.RESTORE_DATA: _restore_data,
}


# -- reply bodies (decoded by the client) ------------------------------------

@dataclass(frozen=True, slots=True)
class Welcome:
    """The server's answer to HELLO."""

    client_id: int
    """The session's client id; negative for a control session, which has
    no client of its own."""
    admin: bool
    resumed: bool
    resume: bytes
    max_batch: int
    max_pools: int
    max_frame: int


def encode_welcome(w: Welcome) -> bytes:
    flags = (1 if w.admin else 0) | (2 if w.resumed else 0)
    return WELCOME.pack(w.client_id, flags, w.resume, w.max_batch,
                        w.max_pools, w.max_frame)


def decode_welcome(body: bytes) -> Welcome:
    try:
        cid, flags, resume, batch, pools, frame = WELCOME.unpack(body)
    except struct.error:
        raise ProtocolError(
            f"WELCOME of {len(body)} bytes is malformed") from None
    return Welcome(cid, bool(flags & 1), bool(flags & 2), resume, batch,
                   pools, frame)


def decode_flags(body: bytes, count: int) -> list[bool]:
    """A reply of one byte per item (PUT_MANY, FLUSH_MANY)."""
    if len(body) != count:
        raise ProtocolError(
            f"reply of {len(body)} bytes for {count} items is malformed")
    return [b != 0 for b in body]


def decode_pages(body: bytes, count: int) -> list[bytes | None]:
    """GET_MANY's reply: a found byte per item, then the found pages."""
    found = body[:count]
    expected = count + found.count(1) * PAGE_SIZE
    if len(found) != count or len(body) != expected or \
            found.count(0) + found.count(1) != count:
        raise ProtocolError(
            f"GET_MANY reply of {len(body)} bytes for {count} items is "
            "malformed")
    pages: list[bytes | None] = []
    at = count
    view = memoryview(body)
    for flag in found:
        if flag:
            pages.append(bytes(view[at:at + PAGE_SIZE]))
            at += PAGE_SIZE
        else:
            pages.append(None)
    return pages


def encode_pages(pages: Sequence[bytes | None]) -> list[bytes]:
    """GET_MANY's reply body as buffers (no page is copied)."""
    found = bytes(p is not None for p in pages)
    return [found, *(p for p in pages if p is not None)]


def encode_pool(pool_id: int, flags: int,
                uuid: uuidlib.UUID | None) -> bytes:
    """A pool's id, flags and uuid (NEW_POOL and LIST_POOLS replies)."""
    return POOL_INFO.pack(pool_id, flags,
                          bytes(16) if uuid is None else uuid.bytes)


def decode_pools(body: bytes) -> list[tuple[int, int, uuidlib.UUID | None]]:
    """Every (pool id, flags, uuid) in a NEW_POOL or LIST_POOLS reply."""
    if len(body) % POOL_INFO.size:
        raise ProtocolError(
            f"pool list of {len(body)} bytes is malformed")
    return [(pool_id, flags, _uuid_field(flags, raw))
            for pool_id, flags, raw in POOL_INFO.iter_unpack(body)]


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("reply body is not JSON") from None
