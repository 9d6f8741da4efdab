"""Live migration of a client from this daemon to another.

Source side (`migrate`), while the client keeps running:
1. journal every handle of the client's persistent pools that changes from
   now on, and refuse to create or destroy its pools (Busy);
2. stream its settings, pools and persistent pages to the target in
   pieces (RESTORE_BEGIN / RESTORE_DATA / RESTORE_COMMIT), yielding to
   other clients between pieces;
2b. send what changed meanwhile as deltas, round after round, until few
   enough handles are left (pre-copy, as VM live migration does);
3. pause: stop reading the client's connection, send the journal as a
   delta (the current data of every changed handle, or a flush if it is
   gone), and mark the session moved;
4. resume reading: the client's next request is answered MOVED with the
   target's address and resume token, and the client library carries on
   there with the same pool ids; the pages left here are freed in slices.
Any failure before step 3 ends aborts the target's restore and leaves the
client where it was.

Target side (`Restores`): a restore in progress belongs to the control
session that began it; its stream is checked as it arrives, applied whole
at the first COMMIT (a detached session with a fresh resume token), and
the delta at the second.  If the source goes away first, it is discarded.

Why a pause rather than freezing: a frozen client's puts are refused,
which a swap device would see as errors; a paused one just waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tmem.client import calls
from tmem.client.aio import AsyncWire
from tmem.client.calls import Call
from tmem.engine import state
from tmem.engine.client import Client
from tmem.engine.errors import (
    Busy,
    InvalidArgument,
    NoSuchClient,
    ServerError,
    TmemError,
)
from tmem.engine.pagestore import Entry
from tmem.engine.pool import Pool
from tmem.protocol import frames
from tmem.protocol.address import parse_address
from tmem.protocol.frames import Op
from tmem.server.sessions import Session, SessionTable, adopt_restored

if TYPE_CHECKING:
    from tmem.server.daemon import Daemon

log = logging.getLogger("tmem.daemon")
CHUNK = 1 << 20
PAGES_PER_SLICE = 2048
SMALL_DELTA = 1024
"""Changed handles few enough to send while the client is paused."""
MAX_ROUNDS = 8
CALL_TIMEOUT = 60.0
"""Seconds the target has to answer each step."""


# -- target side ---------------------------------------------------------------

@dataclass
class _Restore:
    owner: Session
    reader: state.StreamReader = field(default_factory=state.StreamReader)
    client: Client | None = None
    """Set by the first commit; the second applies the delta to it."""


class Restores:
    """Restores in progress on this daemon (the target of migrations)."""

    def __init__(self, table: SessionTable) -> None:
        self.table = table
        self._pending: dict[int, _Restore] = {}
        self._next_id = 1
        self.instance = secrets.token_hex(8)
        """Tells a daemon that a migration's target is itself."""

    def begin(self, owner: Session) -> dict[str, Any]:
        restore_id = self._next_id
        self._next_id += 1
        self._pending[restore_id] = _Restore(owner)
        return {"restore_id": restore_id, "daemon": self.instance}

    def _get(self, owner: Session, restore_id: int) -> _Restore:
        restore = self._pending.get(restore_id)
        if restore is None or restore.owner is not owner:
            raise NoSuchClient(f"restore {restore_id!r} is not in progress "
                               "on this session")
        return restore

    def data(self, owner: Session, restore_id: int, data: bytes) -> None:
        restore = self._get(owner, restore_id)
        try:
            restore.reader.feed(data)
        except TmemError:
            self.abort(owner, restore_id)
            raise

    def commit(self, owner: Session, restore_id: int,
               final: bool = False) -> dict[str, Any]:
        """Apply what arrived since the last commit: the base stream first,
        then deltas; `final` ends the restore (the client stays)."""
        restore = self._get(owner, restore_id)
        try:
            images = restore.reader.finish()
            host = self.table.host
            with host.lock:
                if restore.client is None:
                    return self._apply_base(restore, images)
                if len(images) != 1:
                    raise InvalidArgument("a delta carries one client")
                state.apply_delta(host, restore.client, images[0])
            if final:
                del self._pending[restore_id]
            else:
                restore.reader = state.StreamReader()
            return {}
        except TmemError:
            self.abort(owner, restore_id)
            raise

    def _apply_base(self, restore: _Restore,
                    images: list[state.ClientImage]) -> dict[str, Any]:
        if len(images) != 1:
            raise InvalidArgument(
                f"a migration carries one client, not {len(images)}")
        (client,) = state.apply(self.table.host, images)
        (session,) = adopt_restored(self.table, images, [client])
        restore.client = client
        restore.reader = state.StreamReader()
        return {"client_id": session.session_id, "token": session.token.hex()}

    def abort(self, owner: Session, restore_id: int) -> None:
        restore = self._pending.pop(restore_id, None)
        if restore is None or restore.owner is not owner:
            return
        if restore.client is not None:
            session = self.table.session_of(restore.client)
            if session is not None:
                self.table.close(session, "migration aborted")

    def abort_owned_by(self, owner: Session) -> None:
        for restore_id, restore in list(self._pending.items()):
            if restore.owner is owner:
                self.abort(owner, restore_id)


# -- source side ---------------------------------------------------------------

async def migrate(daemon: Daemon, session: Session, address: str,
                  token: bytes) -> dict[str, Any]:
    """Move a tenant session to the daemon at `address` (see top)."""
    client = session.client
    why = ("it is a control session" if client is None else
           "it is not connected (waiting to be resumed)"
           if not session.attached else
           "it is already being migrated" if session.migrating else None)
    if client is None or why is not None:
        raise Busy(f"{session.describe()} cannot be migrated now: {why}")
    wire = AsyncWire(parse_address(address), f"migrate-{session.name}",
                     token, control=True, resume_window=0.0)
    clock = daemon.host.clock
    started = clock()
    pools = _persistent(client)
    session.migrating = True
    for pool in pools:
        pool.begin_journal()
    restore_id = None
    try:
        await _bounded(wire.connect(), "HELLO")
        begun = await _call(wire, "RESTORE_BEGIN")
        restore_id = begun["restore_id"]
        if begun.get("daemon") == daemon.dispatcher.restores.instance:
            raise InvalidArgument(f"{session.describe()} is already on the "
                                  f"daemon at {address}")
        sent = await _send_base(daemon, wire, restore_id, client)
        target = await _call(wire, "RESTORE_COMMIT", restore_id=restore_id)
        rounds = await _precopy(daemon, wire, restore_id, session, pools)
        pause = await _switch(daemon, wire, restore_id, session, pools,
                              address, target["token"])
    except BaseException:
        if restore_id is not None:
            await _quietly(_call(wire, "RESTORE_ABORT",
                                 restore_id=restore_id))
        raise
    finally:
        for pool in pools:
            pool.end_journal()
        session.migrating = False
        with contextlib.suppress(TmemError, TimeoutError):
            await asyncio.wait_for(wire.close(), CALL_TIMEOUT)
    daemon.spawn(_free(daemon, session))
    report = {"client": session.name, "to": address, "pages": sent[0],
              "bytes": sent[1], "pause_ms": pause * 1000,
              "precopy_rounds": rounds,
              "seconds": clock() - started}
    log.info("migrated %s to %s: %d pages, paused %.1f ms",
             session.describe(), address, sent[0], pause * 1000)
    return report


def _persistent(client: Client) -> list[Pool]:
    return [p for p in client.slots if p is not None and p.persistent]


async def _call(wire: AsyncWire, op: str, **args: Any) -> Any:
    return await _bounded(wire.call(calls.control(Op[op], **args)), op)


async def _bounded(call: Any, what: str) -> Any:
    """A call to the target, which must answer within CALL_TIMEOUT: a
    target that stops answering must not leave the client paused (or the
    migration waiting) for ever."""
    try:
        return await asyncio.wait_for(call, CALL_TIMEOUT)
    except TimeoutError:
        raise ServerError(f"the target daemon did not answer {what} in "
                          f"{CALL_TIMEOUT:.0f} s") from None


async def _quietly(call: Any) -> None:
    with contextlib.suppress(TmemError, OSError):
        await call


class _Chunks:
    """Collects stream bytes and ships them in RESTORE_DATA pieces."""

    def __init__(self, wire: AsyncWire, restore_id: int) -> None:
        self.wire, self.restore_id = wire, restore_id
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        self.buffer += data

    async def ship(self, final: bool = False) -> None:
        while len(self.buffer) >= CHUNK or (final and self.buffer):
            piece = bytes(self.buffer[:CHUNK])
            del self.buffer[:CHUNK]
            await _bounded(self.wire.call(Call(
                Op.RESTORE_DATA,
                frames.encode_restore_data(self.restore_id, piece),
                lambda body: None)), "RESTORE_DATA")


async def _send_base(daemon: Daemon, wire: AsyncWire, restore_id: int,
                     client: Client) -> tuple[int, int]:
    """Stream settings, pools and persistent pages, slice by slice."""
    out = _Chunks(wire, restore_id)
    host = daemon.host
    with host.lock:
        writer = state.StreamWriter(out.write)
        writer.client(state.client_settings(client))
        handles = [p for p in client.slots if p is not None]
        for pool in handles:
            writer.pool(pool.pool_id, pool.flags, pool.uuid)
        keys = {p.pool_id: p.handles() for p in handles if p.persistent}
    for pool in handles:
        for start in range(0, len(keys.get(pool.pool_id, ())),
                           PAGES_PER_SLICE):
            with host.lock:
                writer.pages_of(pool.pool_id, _current(
                    pool, keys[pool.pool_id][start:start + PAGES_PER_SLICE]))
            await out.ship()
    writer.end()
    await out.ship(final=True)
    return writer.pages, writer.page_bytes


def _current(pool: Pool, keys: list[tuple[int, int]]
             ) -> Iterator[tuple[int, int, Entry]]:
    for oid, index in keys:
        entry = pool.entry(oid, index)
        if entry is not None:
            yield oid, index, entry


async def _precopy(daemon: Daemon, wire: AsyncWire, restore_id: int,
                   session: Session, pools: list[Pool]) -> int:
    """Send what changed during the copy, without pausing, until what is
    left to send under the pause is small (or the client writes faster
    than we copy: then stop after MAX_ROUNDS)."""
    rounds = 0
    while rounds < MAX_ROUNDS and sum(
            p.journal_length for p in pools) > SMALL_DELTA:
        out = _Chunks(wire, restore_id)
        with daemon.host.lock:
            journals = [p.take_journal() for p in pools]
            _write_delta(out, session, pools, journals)
        await out.ship(final=True)
        await _call(wire, "RESTORE_COMMIT", restore_id=restore_id)
        rounds += 1
    return rounds


async def _switch(daemon: Daemon, wire: AsyncWire, restore_id: int,
                  session: Session, pools: list[Pool], address: str,
                  token: str) -> float:
    """Pause the client, send the journal, point the client elsewhere."""
    link: Any = session.connection
    link.transport.pause_reading()
    paused = daemon.host.clock()
    try:
        out = _Chunks(wire, restore_id)
        with daemon.host.lock:
            _write_delta(out, session, pools,
                         [p.take_journal() for p in pools])
        await out.ship(final=True)
        await _call(wire, "RESTORE_COMMIT", restore_id=restore_id,
                    final=True)
        session.moved_to = f"session moved to {address}, resume token " \
            f"{token}"
    finally:
        link.transport.resume_reading()
    return daemon.host.clock() - paused


def _write_delta(out: _Chunks, session: Session, pools: list[Pool],
                 journals: list[set[tuple[int, int]]]) -> None:
    assert session.client is not None
    writer = state.StreamWriter(out.write)
    writer.client(state.client_settings(session.client))
    for pool, journal in zip(pools, journals, strict=True):
        writer.pool(pool.pool_id, pool.flags, pool.uuid)
        changed = sorted(journal)
        writer.pages_of(pool.pool_id, _current(pool, changed))
        gone = [(o, i) for o, i in changed if pool.entry(o, i) is None]
        if gone:
            writer.flushes(pool.pool_id, gone)
    writer.end()


async def _free(daemon: Daemon, session: Session) -> None:
    """Free the migrated client's pages here, a slice at a time."""
    client = session.client
    assert client is not None
    host = daemon.host
    while True:
        flushed = 0
        with host.lock:
            for pool in (p for p in client.slots if p is not None):
                flushed += pool.flush_some(PAGES_PER_SLICE - flushed)
                if flushed >= PAGES_PER_SLICE:
                    break
        if not flushed:
            break
        await asyncio.sleep(0)
    daemon.table.close(session, "migrated")
