"""The asyncio client: `await tmem.client.aio.connect(...)`.

The same operations as the blocking client, as coroutines.  Requests from
many tasks are pipelined on one connection: each gets a request id and a
future, and one reader task hands replies to their futures, so a slow
batch does not hold up a small get behind it in the client.

Resume works as in the blocking client: when the connection breaks, the
next call reconnects with the session's resume token and is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections.abc import Iterable
from typing import TypeVar

from tmem.client import calls
from tmem.client.calls import Call
from tmem.client.sync import RECV_SIZE, _token
from tmem.engine.api import ClientRef
from tmem.engine.errors import (
    ConnectionLost,
    Moved,
    NoSuchClient,
    NoSuchPool,
    TmemError,
)
from tmem.engine.handles import (
    FLAG_PERSISTENT,
    FLAG_SHARED,
    OidLike,
    UuidLike,
    parse_pool_flags,
    parse_uuid,
)
from tmem.engine.stats import ClientStats, PoolStats, Snapshot
from tmem.protocol import frames
from tmem.protocol.address import Address, parse_address
from tmem.protocol.connection import ClientConnection, Reply
from tmem.protocol.frames import Op, Status, Welcome

T = TypeVar("T")


class AsyncWire(calls.Session):
    """One pipelined connection and the session it carries."""

    def __init__(self, address: Address, name: str, token: bytes,
                 control: bool, resume_window: float) -> None:
        super().__init__(address, name, token, control, resume_window)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._conn = ClientConnection()
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._connecting = asyncio.Lock()

    async def connect(self) -> Welcome:
        reader, writer = await self._open()
        self._conn, self._writer = ClientConnection(), writer
        self._reader_task = asyncio.create_task(self._read(reader))
        try:
            reply = await self._exchange(Op.HELLO, self.hello())
        except BaseException:
            await self._drop()
            raise
        return self.welcomed(reply)

    async def _open(self) -> tuple[asyncio.StreamReader,
                                   asyncio.StreamWriter]:
        address = self.address
        try:
            if address.transport == "unix":
                return await asyncio.open_unix_connection(address.path)
            return await asyncio.open_connection(address.host, address.port)
        except OSError as error:
            raise ConnectionLost(
                f"cannot connect to the tmem daemon at {address}: "
                f"{error.strerror or error}; is `tmem serve` running?"
            ) from None

    async def _read(self, reader: asyncio.StreamReader) -> None:
        conn = self._conn
        try:
            while data := await reader.read(RECV_SIZE):
                conn.receive_data(data)
                while (reply := conn.next_reply()) is not None:
                    future = self._pending.pop(reply.request_id, None)
                    if future is not None and not future.done():
                        future.set_result(reply)
            error: TmemError = ConnectionLost(
                f"connection to {self.address} closed by the daemon")
        except (OSError, TmemError) as failure:
            error = failure if isinstance(failure, TmemError) else \
                ConnectionLost(f"connection to {self.address} broke: "
                               f"{failure}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # its waiter, if any, still gets it
        self._pending.clear()

    async def call(self, call: Call[T]) -> T:
        try:
            return call.read(await self._exchange(call.opcode, call.parts))
        except Moved as moved:
            await self._drop()
            self.address = parse_address(moved.address)
            self._resume = moved.token
        except ConnectionLost:
            if self.welcome is None:
                raise
            if not call.resend:
                await self._reconnect()
                raise
        await self._reconnect()
        return call.read(await self._exchange(call.opcode, call.parts))

    async def _reconnect(self) -> None:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return  # another task reconnected already
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.resume_window
            while True:
                try:
                    await self.connect()
                    return
                except NoSuchClient as error:
                    raise ConnectionLost(
                        f"session {self.name!r} could not be resumed: "
                        f"{error}") from None
                except ConnectionLost:
                    if loop.time() >= deadline:
                        raise
                    await asyncio.sleep(0.1)

    async def _exchange(self, opcode: Op, parts: list[bytes]) -> bytes:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise ConnectionLost(f"not connected to {self.address}")
        request_id, buffers = self._conn.request(opcode, *parts)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            writer.writelines(buffers)
            await writer.drain()
        except OSError as error:
            self._pending.pop(request_id, None)
            await self._drop()
            raise ConnectionLost(f"connection to {self.address} broke: "
                                 f"{error}") from None
        try:
            reply: Reply = await future
        except ConnectionLost:
            await self._drop()
            raise
        if reply.status != Status.OK:
            raise frames.error_of(reply.status,
                                  reply.body.decode(errors="replace"))
        return reply.body

    async def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
        self._writer = None

    async def close(self) -> None:
        if self._writer is None:
            return
        with contextlib.suppress(TmemError):
            await self._exchange(Op.CLOSE, [])
        await self._drop()
        self.welcome = None


class AsyncPool:
    """A pool in the daemon; every operation is a coroutine."""

    def __init__(self, wire: AsyncWire, pool_id: int, flags: int,
                 uuid: uuidlib.UUID | None) -> None:
        self._wire = wire
        self.pool_id = pool_id
        self.flags = flags
        self.uuid = uuid

    @property
    def persistent(self) -> bool:
        return bool(self.flags & FLAG_PERSISTENT)

    @property
    def shared(self) -> bool:
        return bool(self.flags & FLAG_SHARED)

    async def put(self, oid: OidLike, index: int, page: bytes) -> bool:
        return await self._wire.call(calls.put(self.pool_id, oid, index,
                                               page))

    async def get(self, oid: OidLike, index: int) -> bytes | None:
        return await self._wire.call(calls.get(self.pool_id, oid, index))

    async def flush_page(self, oid: OidLike, index: int) -> bool:
        return await self._wire.call(calls.flush_page(self.pool_id, oid,
                                                      index))

    async def flush_object(self, oid: OidLike) -> int:
        return await self._wire.call(calls.flush_object(self.pool_id, oid))

    async def put_many(self, items: Iterable[tuple[OidLike, int, bytes]]
                       ) -> list[bool]:
        return await self._each(calls.put_many(self.pool_id, items,
                                               self._limit()))

    async def get_many(self, handles: Iterable[tuple[OidLike, int]]
                       ) -> list[bytes | None]:
        return await self._each(calls.get_many(self.pool_id, handles,
                                               self._limit()))

    async def flush_many(self, handles: Iterable[tuple[OidLike, int]]
                         ) -> list[bool]:
        return await self._each(calls.flush_many(self.pool_id, handles,
                                                 self._limit()))

    def _limit(self) -> int:
        welcome = self._wire.welcome
        return frames.MAX_BATCH if welcome is None else welcome.max_batch

    async def _each(self, batch: list[Call[list[T]]]) -> list[T]:
        results: list[T] = []
        for call in batch:
            chunk: list[T] = await self._wire.call(call)
            results.extend(chunk)
        return results

    async def destroy(self) -> None:
        await self._wire.call(calls.destroy(self.pool_id))

    async def stats(self) -> PoolStats:
        return await self._wire.call(calls.pool_stats(self.pool_id))


class AsyncClient(calls.SessionFacts[AsyncWire]):
    """A session with a daemon; every operation is a coroutine."""

    def __init__(self, wire: AsyncWire) -> None:
        self._wire = wire
        self.control = AsyncControl(wire)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def new_pool(self, persistent: bool = False, shared: bool = False,
                       uuid: UuidLike | None = None) -> AsyncPool:
        pool_id, flags, parsed = await self._wire.call(
            calls.new_pool(persistent, shared, uuid))
        return AsyncPool(self._wire, pool_id, flags, parsed)

    async def new_pool_from_flags(self, flags: int,
                                  uuid: UuidLike | None = None) -> AsyncPool:
        """`new_pool` taking flags in the original ABI layout."""
        persistent, shared = parse_pool_flags(flags)
        return await self.new_pool(persistent, shared, uuid)

    async def pool(self, pool_id: int) -> AsyncPool:
        for pool in await self.pools():
            if pool.pool_id == pool_id:
                return pool
        raise NoSuchPool(
            f"pool id {pool_id!r} names no pool of client {self.name!r}")

    async def pools(self) -> list[AsyncPool]:
        infos = await self._wire.call(calls.list_pools())
        return [AsyncPool(self._wire, pid, flags, uuid)
                for pid, flags, uuid in infos]

    async def stats(self) -> ClientStats:
        return await self._wire.call(calls.client_stats())

    async def ping(self) -> None:
        await self._wire.call(calls.ping())

    async def close(self) -> None:
        await self._wire.close()


class AsyncControl:
    """The authority's operations as coroutines (admin only)."""

    def __init__(self, wire: AsyncWire) -> None:
        self._wire = wire

    async def snapshot(self) -> Snapshot:
        return await self._wire.call(calls.snapshot())

    async def _do(self, op: Op, **args: object) -> object:
        return await self._wire.call(calls.control(op, **args))

    async def freeze(self, ref: ClientRef) -> None:
        await self._do(Op.FREEZE, client=ref)

    async def thaw(self, ref: ClientRef) -> None:
        await self._do(Op.THAW, client=ref)

    async def set_weight(self, ref: ClientRef, weight: int) -> None:
        await self._do(Op.SET_WEIGHT, client=ref, weight=weight)

    async def set_cap(self, ref: ClientRef, cap: int | str | None) -> None:
        await self._do(Op.SET_CAP, client=ref, cap=cap)

    async def set_compress(self, ref: ClientRef, compress: str) -> None:
        await self._do(Op.SET_COMPRESS, client=ref, compress=compress)

    async def authorize(self, ref: ClientRef, uuid: UuidLike) -> None:
        await self._do(Op.AUTHORIZE, client=ref, uuid=str(parse_uuid(uuid)))

    async def revoke(self, ref: ClientRef, uuid: UuidLike) -> None:
        await self._do(Op.REVOKE, client=ref, uuid=str(parse_uuid(uuid)))

    async def drop(self, ref: ClientRef) -> object:
        """End a detached session (see RemoteControl.drop)."""
        return await self._do(Op.DROP, client=ref)

    async def freeable(self) -> int:
        result = await self._wire.call(calls.control(Op.FREEABLE))
        return int(result["bytes"])

    async def flush(self, nbytes: int | str) -> int:
        result = await self._wire.call(calls.control(Op.FLUSH_MEMORY,
                                                     bytes=nbytes))
        return int(result["freed"])


async def connect(address: str | None = None, name: str = "client", *,
                  token: bytes | str | None = None,
                  resume_window: float = 30.0,
                  resume: bytes | str | None = None) -> AsyncClient:
    """Open a session with a tmem daemon (see `tmem.connect`)."""
    wire = AsyncWire(parse_address(address), name, _token(token), False,
                     resume_window)
    if resume is not None:
        wire.resume_with(calls.resume_token(resume))
    await wire.connect()
    return AsyncClient(wire)
