"""Sessions: who is connected, what they may do, and how requests run.

A session is one tenant's life in the daemon.  A tenant session owns one
engine client; a control session (an admin tool such as `tmem top`) owns
none.  Sessions outlive connections: a connection that breaks without
CLOSE leaves its session *detached* for `grace` seconds, and a HELLO with
the session's resume token attaches a new connection to it, pools and
all.  After the grace period the session is closed: its private pools are
destroyed.  A HELLO without a token always starts a new session, so a
client never sees another session's pools, even under the same name.

A session *handed over* to this daemon (restored from a file, loaded from
the state file at start, migrated in) has no grace period until it is
first resumed: its persistent pages were entrusted to the daemon, and the
program that owns them may be idle for hours before its next request.
Only an admin's DROP ends it before then.

Rules:
- Control operations need an admin session.
- Shared-pool authorisations granted by client *name* apply to every
  session of that name, present and future; those granted by id apply to
  that session only.
- Every request runs to completion before the next (the daemon calls in
  from one thread); the engine's own lock keeps other threads (the swap
  device) safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tmem.engine import state
from tmem.engine.client import Client
from tmem.engine.errors import (
    Busy,
    InvalidArgument,
    Moved,
    NoSuchClient,
    PermissionDenied,
    StreamError,
    TmemError,
)
from tmem.engine.handles import parse_pool_flags, parse_uuid
from tmem.engine.host import Host
from tmem.engine.stats import Snapshot, to_dict
from tmem.protocol import frames
from tmem.protocol.frames import (
    MAX_BATCH,
    MAX_FRAME,
    U8,
    U32,
    BadRequest,
    Control,
    FlushObject,
    HandlesOp,
    Hello,
    NewPool,
    Op,
    PageOp,
    PoolOp,
    Put,
    PutMany,
    Request,
    RestoreData,
    Simple,
    Welcome,
)
from tmem.server import files
from tmem.server.auth import AuthPolicy, Peer
from tmem.server.config import check_capacity

log = logging.getLogger("tmem.daemon")


@dataclass(eq=False)
class Session:
    """One tenant (or admin tool) as the daemon knows it."""

    session_id: int
    name: str
    client: Client | None
    token: bytes
    admin: bool
    peer: Peer
    attached: bool = True
    detached_at: float = 0.0
    connection: object = None
    """The driver's handle of the attached connection (for takeover)."""
    handed_over: bool = False
    """Waits for its first resume with no grace period (see above)."""
    migrating: bool = False
    moved_to: str | None = None
    """Set once migrated: the MOVED message its requests are answered."""

    def describe(self) -> str:
        kind = "control" if self.client is None else "client"
        return f"{kind} {self.name!r} (session {self.session_id})"


@dataclass
class SessionTable:
    """Every live session, attached or waiting to be resumed."""

    host: Host
    policy: AuthPolicy
    grace: float
    clock: Callable[[], float]
    by_token: dict[bytes, Session] = field(default_factory=dict)
    auth_by_name: dict[str, set[uuidlib.UUID]] = field(default_factory=dict)
    _next_control_id: int = 1

    def hello(self, hello: Hello, peer: Peer, connection: object
              ) -> tuple[Session, Welcome, object]:
        """Admit a HELLO: a new session or a resumed one.

        Returns the session, the WELCOME to send, and the connection it
        displaced (a resumed session still attached elsewhere), or None.
        """
        if hello.resume is not None and not hello.control:
            session, displaced = self._resume(hello, peer, connection)
        else:
            admin = self.policy.admit(peer, hello.token, hello.control)
            session, displaced = self._open(hello, peer, admin,
                                            connection), None
        welcome = Welcome(
            client_id=session.session_id, admin=session.admin,
            resumed=hello.resume is not None, resume=session.token,
            max_batch=MAX_BATCH, max_pools=self.host.max_pools,
            max_frame=MAX_FRAME)
        return session, welcome, displaced

    def _open(self, hello: Hello, peer: Peer, admin: bool,
              connection: object) -> Session:
        client = None
        if hello.control:
            session_id = -self._next_control_id
            self._next_control_id += 1
        else:
            client = self.host.client(hello.name)
            session_id = client.client_id
            for uuid in self.auth_by_name.get(hello.name, ()):
                self.host.authorize(client, uuid)
        session = Session(session_id, hello.name, client,
                          secrets.token_bytes(16), admin, peer,
                          connection=connection)
        self.by_token[_key(session.token)] = session
        log.info("%s connected from %s%s", session.describe(),
                 peer.describe(), " as admin" if admin else "")
        return session

    def _resume(self, hello: Hello, peer: Peer, connection: object
                ) -> tuple[Session, object]:
        assert hello.resume is not None
        session = self.by_token.get(_key(hello.resume))
        if session is None or not hmac.compare_digest(session.token,
                                                      hello.resume):
            raise NoSuchClient(
                "resume token names no live session: it expired or was "
                "closed; connect without it for a new session")
        if session.peer.uid != peer.uid and peer.uid not in (0, None):
            raise PermissionDenied(
                f"session {session.session_id} belongs to uid "
                f"{session.peer.uid}, not {peer.uid}")
        displaced = session.connection if session.attached else None
        session.attached, session.connection = True, connection
        session.handed_over = False
        log.info("%s resumed from %s", session.describe(), peer.describe())
        return session, displaced

    def session_of(self, client: Client) -> Session | None:
        for session in self.by_token.values():
            if session.client is client:
                return session
        return None

    def holds(self, token: bytes) -> bool:
        """Whether a live session has this resume token."""
        return _key(token) in self.by_token

    def adopt(self, session: Session) -> None:
        """Take in a session restored from saved state."""
        self.by_token[_key(session.token)] = session

    def detach(self, session: Session) -> None:
        """The connection broke: keep the session for the grace period."""
        if not session.attached:
            return
        session.attached = False
        session.connection = None
        session.detached_at = self.clock()
        if session.client is None or not self.holds(session.token):
            self._forget(session)  # a control session, or closed already
            log.info("%s disconnected", session.describe())
            return
        log.info("%s disconnected; resumable for %.0f s",
                 session.describe(), self.grace)

    def close(self, session: Session, why: str) -> None:
        """End a session: destroy its private pools, leave shared ones."""
        self._forget(session)
        if session.client is not None:
            session.client.close()
        log.info("%s closed (%s)", session.describe(), why)

    def _forget(self, session: Session) -> None:
        self.by_token.pop(_key(session.token), None)

    def expire(self) -> None:
        """Close detached sessions whose grace period has run out."""
        now = self.clock()
        for session in self._expiring():
            if now - session.detached_at >= self.grace:
                self.close(session, "not resumed within the grace period")

    def _expiring(self) -> list[Session]:
        return [s for s in self.by_token.values()
                if not s.attached and not s.handed_over]

    def drop(self, client: Client) -> None:
        """An admin ends a detached session (its private pools go).

        Raises:
            Busy: the session is attached: its program is using it.
        """
        session = self.session_of(client)
        if session is None:
            raise NoSuchClient(f"client {client.client_id} has no session")
        if session.attached:
            raise Busy(f"{session.describe()} is connected; only a "
                       "detached session can be dropped")
        self.close(session, "dropped by an admin")

    def sessions(self) -> list[Session]:
        return list(self.by_token.values())

    def snapshot(self) -> Snapshot:
        """The host's snapshot, with each client's connection state."""
        snap = self.host.snapshot()
        attached = {s.session_id: s.attached for s in self.by_token.values()}
        clients = tuple(dataclasses.replace(
            c, connected=attached.get(c.client_id, True))
            for c in snap.clients)
        return dataclasses.replace(snap, clients=clients)


def _key(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class Dispatcher:
    """Runs one request of a session against the engine; returns the
    reply as buffers (nothing is copied)."""

    def __init__(self, table: SessionTable) -> None:
        from tmem.server.migration import Restores

        self.table = table
        self.host = table.host
        self.restores = Restores(table)
        self.swap: Any = None
        """The daemon's SwapControl (SWAP_STATUS), when it has one."""

    def handle(self, session: Session, request: Request) -> list[bytes]:
        try:
            return self._handle(session, request)
        except TmemError as error:
            return [frames.error_reply(request.opcode, request.request_id,
                                       error)]

    def _handle(self, session: Session, request: Request) -> list[bytes]:
        if isinstance(request, BadRequest):
            raise request.error
        if session.moved_to is not None:
            raise Moved(session.moved_to)
        if isinstance(request, RestoreData):
            self._need_admin(session, request.opcode)
            self.restores.data(session, request.restore_id, request.data)
            return frames.ok_reply(request.opcode, request.request_id)
        if isinstance(request, Control):
            return self._control(session, request)
        if session.migrating and request.opcode in (
                Op.NEW_POOL, Op.DESTROY_POOL, Op.CLOSE):
            raise Busy(f"{request.opcode.name} waits: "
                       f"{session.describe()} is being migrated")
        if isinstance(request, Simple) and request.opcode in (Op.PING,
                                                              Op.CLOSE):
            return frames.ok_reply(request.opcode, request.request_id)
        client = session.client
        if client is None:
            raise InvalidArgument(
                f"{request.opcode.name} needs a tenant session; this is a "
                "control session")
        rid, op = request.request_id, request.opcode
        match request:
            case Put():
                stored = client.pool(request.pool_id).put(
                    request.oid, request.index, request.page)
                return frames.ok_reply(op, rid, U8.pack(stored))
            case PageOp(opcode=Op.GET):
                page = client.pool(request.pool_id).get(request.oid,
                                                        request.index)
                if page is None:
                    return frames.ok_reply(op, rid, b"\0")
                return frames.ok_reply(op, rid, b"\1", page)
            case PageOp():
                found = client.pool(request.pool_id).flush_page(
                    request.oid, request.index)
                return frames.ok_reply(op, rid, U8.pack(found))
            case PutMany():
                results = client.pool(request.pool_id).put_many(
                    request.items)
                return frames.ok_reply(op, rid, bytes(results))
            case HandlesOp(opcode=Op.GET_MANY):
                pages = client.pool(request.pool_id).get_many(
                    request.handles)
                return frames.ok_reply(op, rid, *frames.encode_pages(pages))
            case HandlesOp():
                found_all = client.pool(request.pool_id).flush_many(
                    request.handles)
                return frames.ok_reply(op, rid, bytes(found_all))
            case FlushObject():
                count = client.pool(request.pool_id).flush_object(
                    request.oid)
                return frames.ok_reply(op, rid, U32.pack(count))
            case _:
                return self._pools(client, request)

    def _pools(self, client: Client, request: Request) -> list[bytes]:
        rid, op = request.request_id, request.opcode
        match request:
            case NewPool():
                persistent, shared = parse_pool_flags(request.flags)
                pool = client.new_pool(persistent, shared, request.uuid)
                return frames.ok_reply(op, rid, frames.encode_pool(
                    pool.pool_id, pool.flags, pool.uuid))
            case PoolOp(opcode=Op.DESTROY_POOL):
                client.pool(request.pool_id).destroy()
                return frames.ok_reply(op, rid)
            case PoolOp():
                stats = client.pool(request.pool_id).stats()
                return frames.ok_reply(op, rid,
                                       frames.encode_json(to_dict(stats)))
            case Simple(opcode=Op.LIST_POOLS):
                pools = [frames.encode_pool(p.pool_id, p.flags, p.uuid)
                         for p in client.pools()]
                return frames.ok_reply(op, rid, *pools)
            case Simple(opcode=Op.CLIENT_STATS):
                return frames.ok_reply(op, rid, frames.encode_json(
                    to_dict(client.stats())))
        raise InvalidArgument(f"request {request!r} is not handled")

    # -- control operations ------------------------------------------------

    def _need_admin(self, session: Session, op: Op) -> None:
        if not session.admin:
            raise PermissionDenied(
                f"{op.name} is an admin operation and "
                f"{session.describe()} is not an admin")

    def _control(self, session: Session, request: Control) -> list[bytes]:
        self._need_admin(session, request.opcode)
        if request.opcode in (Op.RESTORE_BEGIN, Op.RESTORE_COMMIT,
                              Op.RESTORE_ABORT):
            result = self._restore_step(session, request)
            return frames.ok_reply(request.opcode, request.request_id,
                                   frames.encode_json(result))
        result = self._run_control(request.opcode, request.args)
        if request.opcode not in (Op.SNAPSHOT, Op.FREEABLE):
            log.info("%s by %s: %s", request.opcode.name.lower(),
                     session.describe(), _describe_args(request.args))
        return frames.ok_reply(request.opcode, request.request_id,
                               frames.encode_json(result))

    def _restore_step(self, session: Session, request: Control) -> Any:
        restores = self.restores
        if request.opcode == Op.RESTORE_BEGIN:
            return restores.begin(session)
        restore_id = _arg(request.args, "restore_id", (int,))
        if request.opcode == Op.RESTORE_COMMIT:
            return restores.commit(session, restore_id,
                                   bool(request.args.get("final")))
        restores.abort(session, restore_id)
        return {}

    def _run_control(self, op: Op, args: dict[str, Any]) -> Any:
        host = self.host
        if op == Op.SNAPSHOT:
            return to_dict(self.table.snapshot())
        if op == Op.FREEABLE:
            return {"bytes": host.freeable()}
        if op == Op.FLUSH_MEMORY:
            return {"freed": host.flush(_arg(args, "bytes", (int, str)))}
        if op == Op.SWAP_STATUS:
            if self.swap is None:
                raise InvalidArgument("this server has no swap device")
            return self.swap.report()
        if op == Op.SET_CAPACITY:
            return {"evicted": host.set_capacity(check_capacity(
                _arg(args, "capacity", (int, str))))}
        if op == Op.SAVE:
            return self._save(_client_ref(args), _path(args),
                              bool(args.get("ephemeral", False)),
                              bool(args.get("force", False)))
        if op == Op.RESTORE:
            return self._restore(_path(args), args.get("as"))
        ref = _client_ref(args)
        if op == Op.DROP:
            client = host.find_client(ref)
            pages = client.persistent_pages
            self.table.drop(client)
            return {"client_id": client.client_id, "name": client.name,
                    "pages": pages}
        if op == Op.FREEZE:
            host.freeze(ref)
        elif op == Op.THAW:
            host.thaw(ref)
        elif op == Op.SET_WEIGHT:
            host.set_weight(ref, _arg(args, "weight", (int,)))
        elif op == Op.SET_CAP:
            host.set_cap(ref, _arg(args, "cap", (int, str, type(None))))
        elif op == Op.SET_COMPRESS:
            host.set_compress(ref, _arg(args, "compress", (str,)))
        elif op in (Op.AUTHORIZE, Op.REVOKE):
            self._authorize(ref, parse_uuid(_arg(args, "uuid", (str,))),
                            op == Op.AUTHORIZE)
        return {}

    def _save(self, ref: int | str, path: Path, ephemeral: bool,
              force: bool) -> dict[str, Any]:
        """Write a client (with its session's resume token) to a new file
        only its owner may read (tenants' pages are in it)."""
        host = self.host
        client = host.find_client(ref)
        session = self.table.session_of(client)
        token = None if session is None else session.token

        def write(f: BinaryIO) -> state.StreamWriter:
            writer = state.StreamWriter(f.write)
            with host.lock:
                state.write_client(writer, client, ephemeral, token)
                writer.end()
            return writer

        writer = files.write_atomically(path, force, write)
        return {"pages": writer.pages, "bytes": writer.page_bytes}

    def _restore(self, path: Path, as_name: object) -> dict[str, Any]:
        """Create clients from a file; each waits detached for a resume."""
        if as_name is not None and not isinstance(as_name, str):
            raise InvalidArgument(f"'as' = {as_name!r} must be a name")
        try:
            with files.reading(path) as f:
                images = state.read_stream(f.read)
        except StreamError as error:
            raise StreamError(f"{str(path)!r}: {error}") from None
        with self.host.lock:
            clients = state.apply(self.host, images, as_name)
        sessions = adopt_restored(self.table, images, clients)
        return {"clients": [
            {"client_id": s.session_id, "name": s.name,
             "token": s.token.hex(),
             "pages": s.client.persistent_pages if s.client else 0}
            for s in sessions]}

    def _authorize(self, ref: int | str, uuid: uuidlib.UUID,
                   grant: bool) -> None:
        change = self.host.authorize if grant else self.host.revoke
        if isinstance(ref, int):
            change(ref, uuid)
            return
        names = self.table.auth_by_name.setdefault(ref, set())
        if grant:
            names.add(uuid)
        else:
            names.discard(uuid)
        for client in self.host.clients():
            if client.name == ref:
                change(client, uuid)


def _arg(args: dict[str, Any], name: str, types: tuple[type, ...]) -> Any:
    value = args.get(name)
    if not isinstance(value, types) or isinstance(value, bool):
        raise InvalidArgument(
            f"control argument {name!r} = {value!r} must be "
            + " or ".join(t.__name__ for t in types))
    return value


def _path(args: dict[str, Any]) -> Path:
    value = args.get("path")
    if not isinstance(value, str) or not os.path.isabs(value):
        raise InvalidArgument(
            f"control argument 'path' = {value!r} must be an absolute path "
            "on the daemon's host")
    return Path(value)


def _client_ref(args: dict[str, Any]) -> int | str:
    ref = args.get("client")
    if isinstance(ref, bool) or not isinstance(ref, (int, str)) or ref == "":
        raise InvalidArgument(
            f"control argument 'client' = {ref!r} must be a client id or "
            "name")
    return ref


def _describe_args(args: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(args.items())) or "-"


def adopt_restored(table: SessionTable, images: list[state.ClientImage],
                   clients: list[Client]) -> list[Session]:
    """Give restored clients detached sessions, keeping each saved resume
    token unless a live session already holds it."""
    now = table.clock()
    sessions = []
    for image, client in zip(images, clients, strict=True):
        token = _token(image.settings.get("token"))
        if token is None or table.holds(token):
            token = secrets.token_bytes(16)
        session = Session(client.client_id, client.name, client, token,
                          admin=False, peer=Peer("restored", ""),
                          attached=False, detached_at=now,
                          handed_over=True)
        table.adopt(session)
        sessions.append(session)
    return sessions


def _token(value: object) -> bytes | None:
    if isinstance(value, str) and len(value) == 32:
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    return None
