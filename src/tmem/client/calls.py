"""Each operation as a request to send and a way to read its reply.

The sync and the asyncio clients share what this module holds, so the
wire encoding of every call lives in one place:
- a `Call` is the opcode, the buffers of the request body and a function
  that turns the OK reply's body into the result;
- a `Session` is what a connection says in its HELLO and keeps from the
  WELCOME (the session id and the resume token).

Rules:
- Arguments are checked here, before anything is sent, with the
  engine's own checks (the daemon checks again).
- Batches larger than the daemon's limit are cut into several calls.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tmem.engine.errors import InvalidArgument, ProtocolError
from tmem.engine.handles import (
    OidLike,
    UuidLike,
    check_batch,
    check_index,
    check_name,
    check_oid,
    check_page,
    parse_uuid,
    pool_flags,
)
from tmem.engine.stats import ClientStats, PoolStats, Snapshot, from_dict
from tmem.protocol import frames
from tmem.protocol.address import Address
from tmem.protocol.frames import U32, Op, Welcome

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    opcode: Op
    parts: list[bytes]
    read: Callable[[bytes], T]
    resend: bool = True
    """Safe to send again after the connection broke mid-call (the daemon
    may or may not have run it)."""


PoolInfo = tuple[int, int, uuidlib.UUID | None]


def _flag(body: bytes) -> bool:
    if len(body) != 1 or body[0] > 1:
        raise ProtocolError(f"reply {body!r} is not a yes/no byte")
    return body[0] == 1


def _nothing(body: bytes) -> None:
    if body:
        raise ProtocolError(f"reply of {len(body)} bytes was not expected")


def _page(body: bytes) -> bytes | None:
    if body == b"\0":
        return None
    if len(body) != 1 + 4096 or body[0] != 1:
        raise ProtocolError(f"GET reply of {len(body)} bytes is malformed")
    return body[1:]


def _count(body: bytes) -> int:
    if len(body) != 4:
        raise ProtocolError(f"count reply of {len(body)} bytes is malformed")
    return int(U32.unpack(body)[0])


def _one_pool(body: bytes) -> PoolInfo:
    pools = frames.decode_pools(body)
    if len(pools) != 1:
        raise ProtocolError("NEW_POOL reply must describe one pool")
    return pools[0]


def new_pool(persistent: bool, shared: bool,
             uuid: UuidLike | None) -> Call[PoolInfo]:
    if shared and uuid is None:
        raise InvalidArgument("a shared pool needs a uuid")
    parsed = None if uuid is None else parse_uuid(uuid)
    body = frames.encode_new_pool(pool_flags(persistent, shared), parsed)
    return Call(Op.NEW_POOL, [body], _one_pool, resend=False)


def destroy(pool_id: int) -> Call[None]:
    return Call(Op.DESTROY_POOL, [U32.pack(pool_id)], _nothing)


def list_pools() -> Call[list[PoolInfo]]:
    return Call(Op.LIST_POOLS, [], frames.decode_pools)


def _handle(pool_id: int, oid: OidLike, index: int) -> bytes:
    return U32.pack(pool_id) + frames.pack_handle(check_oid(oid),
                                                  check_index(index))


def put(pool_id: int, oid: OidLike, index: int,
        page: bytes) -> Call[bool]:
    return Call(Op.PUT, [_handle(pool_id, oid, index), check_page(page)],
                _flag)


def get(pool_id: int, oid: OidLike, index: int) -> Call[bytes | None]:
    return Call(Op.GET, [_handle(pool_id, oid, index)], _page)


def flush_page(pool_id: int, oid: OidLike, index: int) -> Call[bool]:
    return Call(Op.FLUSH_PAGE, [_handle(pool_id, oid, index)], _flag)


def flush_object(pool_id: int, oid: OidLike) -> Call[int]:
    words = frames.pack_handle(check_oid(oid), 0)[:24]
    return Call(Op.FLUSH_OBJECT, [U32.pack(pool_id) + words], _count)


def put_many(pool_id: int, items: Iterable[tuple[OidLike, int, bytes]],
             limit: int) -> list[Call[list[bool]]]:
    checked = [(frames.pack_handle(check_oid(o), check_index(i)),
                check_page(p))
               for o, i, p in check_batch(items, 3, "(oid, index, page)")]
    calls = []
    for start in range(0, len(checked), limit):
        chunk = checked[start:start + limit]
        head = frames.encode_batch_head(pool_id, len(chunk))
        parts = [head, b"".join(h for h, _ in chunk), *(p for _, p in chunk)]
        calls.append(Call(Op.PUT_MANY, parts, _flags_reader(len(chunk))))
    return calls


def _handles_calls(op: Op, pool_id: int,
                   handles: Iterable[tuple[OidLike, int]], limit: int,
                   reader: Callable[[int], Callable[[bytes], Any]]
                   ) -> list[Call[Any]]:
    packed = [frames.pack_handle(check_oid(o), check_index(i))
              for o, i in check_batch(handles, 2, "(oid, index)")]
    calls = []
    for start in range(0, len(packed), limit):
        chunk = packed[start:start + limit]
        head = frames.encode_batch_head(pool_id, len(chunk))
        calls.append(Call(op, [head + b"".join(chunk)], reader(len(chunk))))
    return calls


def get_many(pool_id: int, handles: Iterable[tuple[OidLike, int]],
             limit: int) -> list[Call[list[bytes | None]]]:
    return _handles_calls(Op.GET_MANY, pool_id, handles, limit,
                          _pages_reader)


def flush_many(pool_id: int, handles: Iterable[tuple[OidLike, int]],
               limit: int) -> list[Call[list[bool]]]:
    return _handles_calls(Op.FLUSH_MANY, pool_id, handles, limit,
                          _flags_reader)


def _flags_reader(count: int) -> Callable[[bytes], list[bool]]:
    return lambda body: frames.decode_flags(body, count)


def _pages_reader(count: int) -> Callable[[bytes], list[bytes | None]]:
    return lambda body: frames.decode_pages(body, count)


def pool_stats(pool_id: int) -> Call[PoolStats]:
    return Call(Op.POOL_STATS, [U32.pack(pool_id)],
                lambda b: _stats(PoolStats, b))


def client_stats() -> Call[ClientStats]:
    return Call(Op.CLIENT_STATS, [], lambda b: _stats(ClientStats, b))


def _stats(cls: type[T], body: bytes) -> T:
    try:
        result: T = from_dict(cls, frames.decode_json(body))
    except (TypeError, KeyError) as error:
        raise ProtocolError(f"{cls.__name__} reply is malformed: "
                            f"{error}") from None
    return result


def ping() -> Call[None]:
    return Call(Op.PING, [], _nothing)


def close() -> Call[None]:
    return Call(Op.CLOSE, [], _nothing)


# -- control operations --------------------------------------------------

_NOT_IDEMPOTENT = {Op.FLUSH_MEMORY, Op.SAVE, Op.RESTORE, Op.MIGRATE,
                   Op.RESTORE_BEGIN, Op.RESTORE_COMMIT, Op.SWAP_ON,
                   Op.SWAP_OFF}


class Session:
    """Who a connection says it is, and the session the daemon gave it.

    The base of both clients' wires: they differ in I/O only.
    """

    def __init__(self, address: Address, name: str, token: bytes,
                 control: bool, resume_window: float) -> None:
        self.address = address
        self.name = check_name(name)
        self.token = token
        self.control = control
        self.resume_window = resume_window
        self.welcome: Welcome | None = None
        self._resume: bytes | None = None

    @property
    def resume_token(self) -> bytes | None:
        """The token that resumes this session, once it has one."""
        return self._resume

    def resume_with(self, token: bytes) -> None:
        """Make the next HELLO resume the session with this token."""
        self._resume = token

    def hello(self) -> list[bytes]:
        """The HELLO body (resuming if we had a session)."""
        resume = None if self.control else self._resume
        return [frames.encode_hello(self.name, self.token, resume,
                                    self.control)]

    def welcomed(self, reply: bytes) -> Welcome:
        """Keep what the WELCOME says; return it."""
        self.welcome = frames.decode_welcome(reply)
        self._resume = self.welcome.resume
        return self.welcome


WireT = TypeVar("WireT", bound=Session)


class SessionFacts(Generic[WireT]):
    """The read-only facts both clients offer about their session."""

    _wire: WireT

    @property
    def name(self) -> str:
        return self._wire.name

    @property
    def client_id(self) -> int:
        welcome = self._wire.welcome
        return -1 if welcome is None else welcome.client_id

    @property
    def resume_token(self) -> str | None:
        """The session's resume token (hex).  Another process may take
        the session over with `connect(..., resume=token)`, even after
        this one died, within the daemon's grace period."""
        token = self._wire.resume_token
        return None if token is None else token.hex()


def resume_token(value: bytes | str) -> bytes:
    """A resume token given as 16 bytes or 32 hex digits, checked.

    Raises:
        InvalidArgument: any other length or text, or all zeros (which
            the HELLO frame reads as "no session").
    """
    token = value
    if isinstance(value, str):
        try:
            token = bytes.fromhex(value)
        except ValueError:
            token = b""
    if not isinstance(token, bytes) or len(token) != 16 or \
            token == bytes(16):
        raise InvalidArgument(
            f"resume token {value!r} must be the 32 hex digits (or 16 "
            "bytes) a session was given, not all zeros")
    return token


def control(op: Op, **args: Any) -> Call[Any]:
    return Call(op, [frames.encode_json(args)], frames.decode_json,
                resend=op not in _NOT_IDEMPOTENT)


def snapshot() -> Call[Snapshot]:
    return Call(Op.SNAPSHOT, [b"{}"], lambda b: _stats(Snapshot, b))
