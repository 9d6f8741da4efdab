"""The blocking client: `tmem.connect(...)` and `tmem.connect_control(...)`.

A `RemoteClient` has the embedded `Client`'s interface and a `RemotePool`
the embedded `Pool`'s, so code written for one runs on the other.  Every
status the daemon returns is raised as its exception class.

Rules:
- One request at a time per connection (a lock makes it safe to share
  between threads); batches (`put_many`, ...) are the way to go fast.
- If the connection breaks, the next call reconnects with the session's
  resume token (for up to `resume_window` seconds, retrying) and is sent
  again, so pools and pool ids survive a transient disconnect.  Resending
  is safe for puts and flushes (they are idempotent); a get from a private
  ephemeral pool whose reply was lost returns None (ephemeral pages may
  vanish anyway).  If the session has expired, `ConnectionLost` is raised.
- A control connection (admin tools) holds no pools; it simply reconnects.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable
from typing import TypeVar

from tmem.client import calls
from tmem.client.calls import Call
from tmem.engine.api import ClientRef
from tmem.engine.errors import (
    ConnectionLost,
    InvalidArgument,
    Moved,
    NoSuchClient,
    NoSuchPool,
    ProtocolError,
    TmemError,
)
from tmem.engine.handles import (
    FLAG_PERSISTENT,
    FLAG_SHARED,
    OidLike,
    UuidLike,
    parse_pool_flags,
    parse_uuid,
    shown,
)
from tmem.engine.stats import ClientStats, PoolStats, Snapshot
from tmem.protocol import frames
from tmem.protocol.address import Address, parse_address
from tmem.protocol.connection import (
    ClientConnection,
    Reply,
    body_length,
    reply_from,
)
from tmem.protocol.frames import HEADER_SIZE, Op, Status, Welcome

T = TypeVar("T")
RECV_SIZE = 1 << 18
IOV_GROUP = 512


class Wire(calls.Session):
    """One socket to the daemon and the session it carries."""

    def __init__(self, address: Address, name: str, token: bytes,
                 control: bool, timeout: float | None,
                 resume_window: float) -> None:
        super().__init__(address, name, token, control, resume_window)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._conn = ClientConnection()
        self._lock = threading.Lock()

    def connect(self) -> Welcome:
        """Open the socket and say HELLO (resuming if we had a session)."""
        sock = self._open_socket()
        self._sock, self._conn = sock, ClientConnection()
        try:
            reply = self._exchange(Op.HELLO, self.hello())
        except BaseException:
            self._drop()
            raise
        return self.welcomed(reply)

    def _open_socket(self) -> socket.socket:
        address = self.address
        try:
            if address.transport == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(address.path)
            else:
                sock = socket.create_connection(
                    (address.host, address.port), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            raise ConnectionLost(
                f"cannot connect to the tmem daemon at {address}: "
                f"{error.strerror or error}; is `tmem serve` running?"
            ) from None
        return sock

    def call(self, call: Call[T]) -> T:
        """Send one request and return its decoded reply.

        A broken connection is resumed and a MOVED session followed to its
        new daemon; then the request is sent again, once.
        """
        with self._lock:
            if self._sock is None and self.control:
                self.connect()  # a control wire dials when needed
            try:
                return call.read(self._exchange(call.opcode, call.parts))
            except Moved as moved:
                self._follow(moved)  # it did not run: always resend
            except ConnectionLost:  # not OSError: PermissionDenied is one
                if self.welcome is None:
                    raise
                self._drop()
                if not call.resend:
                    self._reconnect()
                    raise
            self._reconnect()
            return call.read(self._exchange(call.opcode, call.parts))

    def call_waiting(self, call: Call[T]) -> T:
        """`call`, with no socket timeout: for operations that take as
        long as they take (a migration)."""
        with self._lock:
            sock = self._sock
            if sock is not None:
                sock.settimeout(None)
        try:
            return self.call(call)
        finally:
            with self._lock:
                if self._sock is not None:
                    self._sock.settimeout(self.timeout)

    def _follow(self, moved: Moved) -> None:
        """Point this wire at the daemon the session moved to."""
        self._drop()
        self.address = parse_address(moved.address)
        self._resume = moved.token

    def _reconnect(self) -> None:
        deadline = time.monotonic() + self.resume_window
        while True:
            try:
                self.connect()
                return
            except NoSuchClient as error:
                raise ConnectionLost(
                    f"session {self.name!r} could not be resumed: "
                    f"{error}") from None
            except ConnectionLost:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _exchange(self, opcode: Op, parts: list[bytes]) -> bytes:
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"not connected to {self.address}")
        request_id, buffers = self._conn.request(opcode, *parts)
        try:
            _send_all(sock, buffers)
            reply = self._receive(sock)
        except OSError as error:
            self._drop()
            raise ConnectionLost(
                f"connection to {self.address} broke: "
                f"{error.strerror or error}") from None
        if reply.request_id != request_id or reply.opcode != opcode:
            self._drop()
            raise ProtocolError(
                f"reply {reply.request_id}/{reply.opcode} does not answer "
                f"request {request_id}/{opcode}")
        if reply.status != Status.OK:
            raise frames.error_of(reply.status,
                                  reply.body.decode(errors="replace"))
        return reply.body

    def _receive(self, sock: socket.socket) -> Reply:
        # Replies come one per request, so read exactly one: its header
        # and status byte, then the rest it announces as one bytes object
        # (no copy after recv: pages are sliced from it directly).
        head = _recv_exact(sock, HEADER_SIZE + 1)
        length = body_length(head[:HEADER_SIZE])
        if length < 1:
            raise ProtocolError("a reply must carry a status byte")
        rest = _recv_exact(sock, length - 1) if length > 1 else b""
        return reply_from(head[:HEADER_SIZE], head[HEADER_SIZE:], rest)

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Say CLOSE (ending the session) and close the socket."""
        with self._lock:
            if self._sock is None:
                return
            with contextlib.suppress(TmemError):
                self._exchange(Op.CLOSE, [])
            self._drop()
            self.welcome = None
            self._resume = None


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = sock.recv(size, socket.MSG_WAITALL)
    if len(data) == size:
        return data
    parts, got = [data], len(data)
    while got < size:
        if not parts[-1]:
            raise ConnectionResetError(
                errno.ECONNRESET, f"the daemon closed the connection "
                f"{got} bytes into a {size}-byte read")
        parts.append(sock.recv(size - got, socket.MSG_WAITALL))
        got += len(parts[-1])
    return b"".join(parts)


def _send_all(sock: socket.socket, buffers: list[bytes]) -> None:
    for start in range(0, len(buffers), IOV_GROUP):
        group = buffers[start:start + IOV_GROUP]
        sent = sock.sendmsg(group)
        total = sum(len(b) for b in group)
        if sent < total:
            sock.sendall(b"".join(group)[sent:])


class RemotePool:
    """A pool in the daemon, with the embedded `Pool`'s interface."""

    def __init__(self, wire: Wire, pool_id: int, flags: int,
                 uuid: uuidlib.UUID | None) -> None:
        self._wire = wire
        self.pool_id = pool_id
        self.flags = flags
        self._uuid = uuid

    def __repr__(self) -> str:
        return f"<RemotePool {self.pool_id} of {self._wire.name!r}>"

    @property
    def persistent(self) -> bool:
        return bool(self.flags & FLAG_PERSISTENT)

    @property
    def shared(self) -> bool:
        return bool(self.flags & FLAG_SHARED)

    @property
    def uuid(self) -> uuidlib.UUID | None:
        return self._uuid

    def put(self, oid: OidLike, index: int, page: bytes) -> bool:
        return self._wire.call(calls.put(self.pool_id, oid, index, page))

    def get(self, oid: OidLike, index: int) -> bytes | None:
        return self._wire.call(calls.get(self.pool_id, oid, index))

    def flush_page(self, oid: OidLike, index: int) -> bool:
        return self._wire.call(calls.flush_page(self.pool_id, oid, index))

    def flush_object(self, oid: OidLike) -> int:
        return self._wire.call(calls.flush_object(self.pool_id, oid))

    def put_many(self, items: Iterable[tuple[OidLike, int, bytes]]
                 ) -> list[bool]:
        return self._each(calls.put_many(self.pool_id, items, self._limit()))

    def get_many(self, handles: Iterable[tuple[OidLike, int]]
                 ) -> list[bytes | None]:
        return self._each(calls.get_many(self.pool_id, handles,
                                         self._limit()))

    def flush_many(self, handles: Iterable[tuple[OidLike, int]]
                   ) -> list[bool]:
        return self._each(calls.flush_many(self.pool_id, handles,
                                           self._limit()))

    def _limit(self) -> int:
        welcome = self._wire.welcome
        return frames.MAX_BATCH if welcome is None else welcome.max_batch

    def _each(self, batch: list[Call[list[T]]]) -> list[T]:
        results: list[T] = []
        for call in batch:
            chunk: list[T] = self._wire.call(call)
            results.extend(chunk)
        return results

    def destroy(self) -> None:
        self._wire.call(calls.destroy(self.pool_id))

    def stats(self) -> PoolStats:
        return self._wire.call(calls.pool_stats(self.pool_id))


class RemoteClient(calls.SessionFacts[Wire]):
    """A session with a daemon, with the embedded `Client`'s interface."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self.control = RemoteControl(wire)
        """Admin operations (PermissionDenied unless this is an admin)."""

    def __repr__(self) -> str:
        return f"<RemoteClient {self.client_id} {self.name!r}>"

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def admin(self) -> bool:
        return bool(self._wire.welcome and self._wire.welcome.admin)

    @property
    def address(self) -> Address:
        return self._wire.address

    def new_pool(self, persistent: bool = False, shared: bool = False,
                 uuid: UuidLike | None = None) -> RemotePool:
        pool_id, flags, parsed = self._wire.call(
            calls.new_pool(persistent, shared, uuid))
        return RemotePool(self._wire, pool_id, flags, parsed)

    def new_pool_from_flags(self, flags: int,
                            uuid: UuidLike | None = None) -> RemotePool:
        """`new_pool` taking flags in the original ABI layout."""
        persistent, shared = parse_pool_flags(flags)
        return self.new_pool(persistent, shared, uuid)

    def pool(self, pool_id: int) -> RemotePool:
        for pool in self.pools():
            if pool.pool_id == pool_id:
                return pool
        raise NoSuchPool(
            f"pool id {pool_id!r} names no pool of client {self.name!r}")

    def pools(self) -> list[RemotePool]:
        return [RemotePool(self._wire, pid, flags, uuid)
                for pid, flags, uuid in self._wire.call(calls.list_pools())]

    def stats(self) -> ClientStats:
        return self._wire.call(calls.client_stats())

    def ping(self) -> None:
        self._wire.call(calls.ping())

    def close(self) -> None:
        """End the session: private pools are destroyed at once."""
        self._wire.close()

    destroy = close


class RemoteControl:
    """The authority's operations, sent to the daemon (admin only)."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    def __enter__(self) -> RemoteControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self) -> Snapshot:
        return self._wire.call(calls.snapshot())

    def freeze(self, ref: ClientRef) -> None:
        self._wire.call(calls.control(Op.FREEZE, client=ref))

    def thaw(self, ref: ClientRef) -> None:
        self._wire.call(calls.control(Op.THAW, client=ref))

    def set_weight(self, ref: ClientRef, weight: int) -> None:
        self._wire.call(calls.control(Op.SET_WEIGHT, client=ref,
                                      weight=weight))

    def set_cap(self, ref: ClientRef, cap: int | str | None) -> None:
        self._wire.call(calls.control(Op.SET_CAP, client=ref, cap=cap))

    def set_compress(self, ref: ClientRef, compress: str) -> None:
        self._wire.call(calls.control(Op.SET_COMPRESS, client=ref,
                                      compress=compress))

    def authorize(self, ref: ClientRef, uuid: UuidLike) -> None:
        self._wire.call(calls.control(Op.AUTHORIZE, client=ref,
                                      uuid=str(parse_uuid(uuid))))

    def revoke(self, ref: ClientRef, uuid: UuidLike) -> None:
        self._wire.call(calls.control(Op.REVOKE, client=ref,
                                      uuid=str(parse_uuid(uuid))))

    def freeable(self) -> int:
        return int(self._wire.call(calls.control(Op.FREEABLE))["bytes"])

    def set_capacity(self, capacity: int | str) -> int:
        """Lend more or less memory; returns the bytes evicted."""
        result = self._wire.call(calls.control(Op.SET_CAPACITY,
                                               capacity=capacity))
        return int(result["evicted"])

    def flush(self, nbytes: int | str) -> int:
        result = self._wire.call(calls.control(Op.FLUSH_MEMORY,
                                               bytes=nbytes))
        return int(result["freed"])

    def save(self, ref: ClientRef, path: str | os.PathLike[str],
             ephemeral: bool = False, force: bool = False
             ) -> dict[str, int]:
        """Have the daemon write a client's state to `path` (on its host;
        mode 0600; an existing file only with `force`).

        Returns the pages and payload bytes written.
        """
        result = self._wire.call(calls.control(
            Op.SAVE, client=ref, path=os.path.abspath(path),
            ephemeral=ephemeral, force=force))
        return {"pages": int(result["pages"]), "bytes": int(result["bytes"])}

    def restore(self, path: str | os.PathLike[str],
                as_name: str | None = None) -> list[dict[str, object]]:
        """Have the daemon restore clients from `path` (on its host).

        Each restored client waits, detached, to be resumed with its token
        (`tmem.connect(..., resume=token)`).  Returns one dict per client:
        client_id, name, token (hex), pages.
        """
        result = self._wire.call(calls.control(
            Op.RESTORE, path=os.path.abspath(path), **{"as": as_name}))
        return list(result["clients"])

    def migrate(self, ref: ClientRef, to: str,
                token: bytes | str | None = None) -> dict[str, object]:
        """Move a client, live, to the daemon at `to` (an address both the
        daemon and the client can reach); `token` is that daemon's admin
        token if it needs one.  Returns the pages and bytes copied and the
        client's pause in ms."""
        result = self._wire.call_waiting(calls.control(
            Op.MIGRATE, client=ref, to=to,
            token=_token(token).decode()))
        return dict(result)

    def swap_on(self, size: int | str, priority: int | None = None,
                mountpoint: str | None = None) -> dict[str, object]:
        """Have the daemon serve kernel swap from a persistent pool (the
        daemon must run as root)."""
        if mountpoint:
            mountpoint = os.path.abspath(mountpoint)  # the caller's cwd
        return dict(self._wire.call_waiting(calls.control(
            Op.SWAP_ON, size=size, priority=priority,
            mountpoint=mountpoint)))

    def swap_off(self) -> dict[str, object]:
        """swapoff, detach the loop device, unmount; in that order."""
        return dict(self._wire.call_waiting(calls.control(Op.SWAP_OFF)))

    def swap_status(self) -> dict[str, object]:
        return dict(self._wire.call(calls.control(Op.SWAP_STATUS)))

    def drop(self, ref: ClientRef) -> dict[str, object]:
        """End a detached session and destroy its private pools (Busy if
        its program is connected)."""
        return dict(self._wire.call(calls.control(Op.DROP, client=ref)))

    def close(self) -> None:
        self._wire.close()


def _token(token: bytes | str | None) -> bytes:
    if token is None:
        return b""
    if isinstance(token, str):
        return token.encode()
    if not isinstance(token, bytes):
        raise InvalidArgument(f"token {shown(token)} must be bytes, a "
                              "string or None")
    return token


def connect(address: str | None = None, name: str = "client", *,
            token: bytes | str | None = None, timeout: float | None = 30.0,
            resume_window: float = 30.0,
            resume: bytes | str | None = None) -> RemoteClient:
    """Open a session with a tmem daemon.

    Args:
        address: a socket path, "unix:PATH" or "tcp:HOST:PORT" (default:
            $TMEM_ADDRESS, else the daemon's default socket).
        name: the client's name, shown by `tmem top`; need not be unique.
        token: the tenant or admin token (required over TCP).
        timeout: seconds to wait on the socket (None: forever).
        resume_window: seconds to keep retrying to resume the session
            after the connection breaks (a daemon restart included).
        resume: a resume token (bytes or hex) of an existing session, e.g.
            one `tmem restore` created: attach to it instead of a new one.

    Raises:
        ConnectionLost: the daemon cannot be reached.
        PermissionDenied: the daemon refused the token or peer.
    """
    wire = Wire(parse_address(address), name, _token(token), False,
                timeout, resume_window)
    if resume is not None:
        wire.resume_with(calls.resume_token(resume))
    wire.connect()
    return RemoteClient(wire)


def connect_control(address: str | None = None, *,
                    token: bytes | str | None = None,
                    timeout: float | None = 10.0,
                    name: str = "control", lazy: bool = False
                    ) -> RemoteControl:
    """Open an admin connection (no pools) for monitoring and steering.

    With `lazy`, nothing is dialled until the first call; either way a
    call made while the daemon is away raises ConnectionLost, and a later
    call dials again.
    """
    wire = Wire(parse_address(address), name, _token(token), True,
                timeout, resume_window=0.0)
    if not lazy:
        wire.connect()
    return RemoteControl(wire)
