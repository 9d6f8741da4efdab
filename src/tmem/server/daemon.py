"""tmemd: the asyncio driver that serves a Host over sockets.

It owns the listeners, hands each connection's bytes to a sans-IO
`ServerConnection`, runs requests through the `Dispatcher` and writes the
replies.  All engine calls happen on the event loop's thread, one request
at a time.

Rules:
- Garbage that cannot be framed closes that connection with one log line;
  every other bad request gets an error reply and the connection goes on.
- A peer that sends faster than it reads is paused (transport flow
  control), so it cannot make the daemon buffer without bound or starve
  the others.
- The daemon logs events (connect, disconnect, control actions, start,
  stop), never pages.
- SIGINT/SIGTERM stop it cleanly, unless a guard refuses (e.g. a swap
  device is active): then it logs why and keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tmem.engine.errors import (
    InvalidArgument,
    LimitExceeded,
    NoSuchClient,
    PermissionDenied,
    ProtocolError,
    ServerError,
    TmemError,
)
from tmem.engine.handles import format_size
from tmem.engine.host import Host
from tmem.engine.stats import Snapshot
from tmem.protocol import frames
from tmem.protocol.address import default_socket, parse_host_port
from tmem.protocol.connection import ServerConnection, State
from tmem.protocol.frames import Control, Hello, Op, Request, Simple
from tmem.server import metrics, migration, persistence
from tmem.server.auth import AuthPolicy, Peer, peer_of
from tmem.server.config import Config
from tmem.server.sessions import Dispatcher, Session, SessionTable
from tmem.server.swap import SwapControl

log = logging.getLogger("tmem.daemon")

HIGH_WATER = 4 << 20
"""Bytes queued for a peer before we stop reading from it."""


@dataclass
class ConnectionCounts:
    """What became of the daemon's connections, each reason counted.

    Bumped on the event loop's thread; /metrics reads them from its own
    thread without a lock (a scrape may be one event behind).
    """

    accepted: int = 0
    """Connections taken in (under max_connections)."""
    refused_busy: int = 0
    """Connections refused at once: max_connections were open."""
    refused_hello: int = 0
    """HELLOs refused (a bad token or name, an unknown resume token)."""
    hello_timeouts: int = 0
    """Connections closed for saying no HELLO within hello_timeout."""
    protocol_errors: int = 0
    """Connections closed because their bytes could not be framed."""
    internal_errors: int = 0
    """Requests answered ServerError because the daemon failed on them."""


class Daemon:
    """A Host served over a Unix socket (and optionally TCP)."""

    def __init__(self, config: Config,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.host = Host(capacity=config.capacity, compress=config.compress,
                         dedup=config.dedup, max_pools=config.max_pools,
                         max_clients=config.max_clients, clock=clock)
        tenant, admin = config.tokens()
        self.table = SessionTable(
            self.host, AuthPolicy(os.getuid(), tenant, admin),
            config.grace, clock)
        self.dispatcher = Dispatcher(self.table)
        self.swap = SwapControl(self.host)
        self.dispatcher.swap = self.swap
        self.links: set[_Link] = set()
        self.connections = ConnectionCounts()
        self.exit_guards: list[Callable[[], str | None]] = [
            self.swap.exit_refusal]
        """Each returns a reason not to stop now, or None."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[Any]] = set()
        self._metrics: metrics.MetricsServer | None = None
        self.lost_pages = False
        """Set when the state could not be saved at shutdown."""
        self._servers: list[asyncio.base_events.Server] = []
        self._stopped: asyncio.Event | None = None

    @property
    def tcp_port(self) -> int | None:
        """The TCP port listened on (useful when configured as port 0)."""
        for server in self._servers[1:]:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None

    # -- running -------------------------------------------------------------

    async def start(self) -> None:
        """Listen on every configured address."""
        self._stopped = asyncio.Event()
        self.loop = loop = asyncio.get_running_loop()
        state_file = self.config.state
        if state_file is not None:
            persistence.check_state_path(state_file)
        sock = _bind_unix(self.config.socket, self.config.socket_mode)
        try:
            await self._listen(sock)
            if state_file is not None:
                persistence.load_state(self.table, state_file)
        except BaseException:
            await self._unlisten()
            sock.close()
            self.config.socket.unlink(missing_ok=True)
            raise
        self._tasks.append(loop.create_task(self._expire_sessions()))
        log.info("serving %s on %s%s (capacity %s, compress %s, dedup %s)",
                 "tmem", self.config.socket,
                 f" and tcp {self.config.tcp}" if self.config.tcp else "",
                 format_size(self.host.capacity), self.config.compress,
                 "on" if self.config.dedup else "off")

    async def _listen(self, sock: socket.socket) -> None:
        """Serve the bound Unix socket, then TCP and /metrics if asked.

        Raises:
            InvalidArgument: an address cannot be bound (in use, unknown
                host, not allowed), naming it.
        """
        loop = asyncio.get_running_loop()
        self._servers.append(await loop.create_unix_server(
            lambda: _Link(self), sock=sock))
        if self.config.tcp is not None:
            host, port = parse_host_port(self.config.tcp, "tcp")
            try:
                self._servers.append(await loop.create_server(
                    lambda: _Link(self), host, port))
            except OSError as error:
                raise _unservable("tcp", self.config.tcp, error) from None
        if self.config.metrics is not None:
            try:
                self._metrics = metrics.serve_metrics(
                    self._snapshot_for_thread, self.config.metrics,
                    lambda: dataclasses.asdict(self.connections))
            except OSError as error:
                raise _unservable("metrics", self.config.metrics,
                                  error) from None
            log.info("serving /metrics on %s:%d", *self._metrics.address)

    async def _unlisten(self) -> None:
        """Undo `_listen` after a failed start."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()

    async def serve_forever(self) -> None:
        """Run until `request_stop()` (or SIGINT/SIGTERM) ends it."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        # a swap device's FUSE thread must not end on a stray hangup
        loop.add_signal_handler(signal.SIGHUP, log.info,
                                "SIGHUP ignored")
        await self.wait_stopped()

    async def wait_stopped(self) -> None:
        """Wait for `request_stop()`, then shut down."""
        assert self._stopped is not None
        await self._stopped.wait()
        await self.shutdown()

    def request_stop(self, why: str = "stop") -> None:
        """Stop unless a guard objects (then log why and keep going)."""
        for guard in self.exit_guards:
            reason = guard()
            if reason is not None:
                log.warning("%s refused: %s", why, reason)
                return
        log.info("%s received: shutting down", why)
        if self._stopped is not None:
            self._stopped.set()

    def _snapshot_for_thread(self) -> Snapshot:
        """A snapshot taken on the event loop, for the metrics thread."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self._snapshot(),
                                                  self.loop)
        return future.result(10)

    async def _snapshot(self) -> Snapshot:
        return self.table.snapshot()

    async def shutdown(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
        for task in self._tasks:
            task.cancel()
        for server in self._servers:
            server.close()
        if self.config.state is not None:
            try:
                persistence.save_state(self.table, self.config.state)
            except InvalidArgument as error:
                self.lost_pages = True
                log.error("could not save the state: %s; persistent pages "
                          "are lost", error)
        for link in list(self.links):
            link.transport.close()
        for server in self._servers:
            await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.config.socket.unlink()
        log.info("stopped")

    async def _expire_sessions(self) -> None:
        period = max(0.05, min(1.0, self.config.grace / 4))
        while True:
            await asyncio.sleep(period)
            self.table.expire()

    # -- requests ------------------------------------------------------------

    def serve(self, link: _Link, request: Request) -> list[bytes]:
        """Run one request of a connection; return the reply buffers."""
        if isinstance(request, Hello):
            return self._hello(link, request)
        session = link.session
        if session is None:  # only a refused HELLO gets here
            return [frames.error_reply(request.opcode, request.request_id,
                                       ProtocolError("no session"))]
        if isinstance(request, Control) and request.opcode in (
                Op.MIGRATE, Op.SWAP_ON, Op.SWAP_OFF):
            return self._run_task(link, session, request)
        reply = self.dispatcher.handle(session, request)
        if isinstance(request, Simple) and request.opcode == Op.CLOSE:
            self.table.close(session, "closed by the client")
            link.session = None
            link.connection.finish()
        return reply

    def _run_task(self, link: _Link, admin: Session,
                  request: Control) -> list[bytes]:
        """Start a long control operation; its reply is written when it
        ends, and other clients are served meanwhile."""
        try:
            if not admin.admin:
                raise PermissionDenied(
                    f"{request.opcode.name} is an admin operation and "
                    f"{admin.describe()} is not an admin")
            work = self._task_for(request)
        except TmemError as error:
            return [frames.error_reply(request.opcode, request.request_id,
                                       error)]
        task = self.spawn(work)
        task.add_done_callback(lambda t: link.answer(
            request.opcode, request.request_id, t))
        return []

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` as a task the daemon holds on to until it ends (the
        loop keeps only weak references: an unheld task can vanish)."""
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    def _task_for(self, request: Control) -> Coroutine[Any, Any,
                                                      dict[str, Any]]:
        args = request.args
        if request.opcode == Op.SWAP_ON:
            size, priority = args.get("size"), args.get("priority")
            mountpoint = args.get("mountpoint")
            if not isinstance(size, (int, str)) or isinstance(size, bool) \
                    or not isinstance(priority, (int, type(None))) or \
                    not isinstance(mountpoint, (str, type(None))):
                raise InvalidArgument(f"SWAP_ON arguments {args!r} must be "
                                      "size, priority and mountpoint")
            return self.swap.turn_on(size, priority, mountpoint)
        if request.opcode == Op.SWAP_OFF:
            return self.swap.turn_off()
        to, token, ref = args.get("to"), args.get("token") or "", \
            args.get("client")
        if not isinstance(to, str) or not isinstance(token, str):
            raise InvalidArgument(f"MIGRATE needs 'to' and 'token' "
                                  f"strings, not {args!r}")
        if not isinstance(ref, (int, str)) or isinstance(ref, bool):
            raise InvalidArgument(f"MIGRATE 'client' = {ref!r} must be "
                                  "a client id or name")
        target = self.table.session_of(self.host.find_client(ref))
        if target is None:
            raise NoSuchClient(f"client {ref!r} has no session")
        return migration.migrate(self, target, to, token.encode())

    def _hello(self, link: _Link, hello: Hello) -> list[bytes]:
        try:
            session, welcome, displaced = self.table.hello(hello, link.peer,
                                                           link)
        except TmemError as error:
            self.connections.refused_hello += 1
            log.info("refused %r from %s: %s", hello.name,
                     link.peer.describe(), error)
            link.connection.finish()
            return [frames.error_reply(Op.HELLO, hello.request_id, error)]
        if isinstance(displaced, _Link):
            displaced.session = None
            displaced.transport.close()
        link.session = session
        link.greeted()
        return frames.ok_reply(Op.HELLO, hello.request_id,
                               frames.encode_welcome(welcome))


class _Link(asyncio.Protocol):
    """One connection: bytes to requests, replies to bytes."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.connection = ServerConnection()
        self.session: Session | None = None
        self.peer = Peer("unknown", "")
        self.transport: asyncio.Transport
        self.refusal: LimitExceeded | None = None
        """Set when the daemon is full: the HELLO gets this, then a close."""
        self._hello_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.peer = peer_of(transport.get_extra_info("socket"))
        self._hello_timer = asyncio.get_running_loop().call_later(
            self.daemon.config.hello_timeout, self._no_hello)
        limit = self.daemon.config.max_connections
        if len(self.daemon.links) >= limit:
            self.daemon.connections.refused_busy += 1
            log.warning("refused a connection from %s: %d connections "
                        "open (max_connections)", self.peer.describe(),
                        len(self.daemon.links))
            self.refusal = LimitExceeded(
                f"the daemon has {limit} connections open, the most it "
                "takes (max_connections); try again later")
            return
        self.daemon.links.add(self)
        self.daemon.connections.accepted += 1

    def _no_hello(self) -> None:
        """A connection that does not say HELLO in time is closed, so idle
        sockets cannot use up max_connections."""
        if self.session is None and not self.transport.is_closing():
            self.daemon.connections.hello_timeouts += 1
            log.info("closed connection from %s: no HELLO within %.0f s",
                     self.peer.describe(), self.daemon.config.hello_timeout)
            self.transport.close()

    def greeted(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        connection.receive_data(data)
        if self.refusal is not None:
            self._refuse()
            return
        while True:
            try:
                request = connection.next_request()
            except ProtocolError as error:
                self.daemon.connections.protocol_errors += 1
                log.warning("closed connection from %s: %s",
                            self.peer.describe(), error)
                self.transport.abort()
                return
            if request is None:
                break
            self.transport.writelines(self._serve(request))
        if connection.state is State.FINISHED:
            self.transport.close()

    def _refuse(self) -> None:
        """Answer the first request with the refusal, then close."""
        try:
            request = self.connection.next_request()
        except ProtocolError:
            request = None
        if request is not None:
            assert self.refusal is not None
            self.transport.write(frames.error_reply(
                request.opcode, request.request_id, self.refusal))
        self.transport.close()

    def _serve(self, request: Request) -> list[bytes]:
        try:
            return self.daemon.serve(self, request)
        except Exception as error:  # a bug: answer, log, keep serving
            self.daemon.connections.internal_errors += 1
            log.exception("internal error on %s from %s",
                          request.opcode, self.peer.describe())
            return [frames.error_reply(request.opcode, request.request_id,
                                       ServerError(f"internal error: "
                                                   f"{error!r}"))]

    def answer(self, opcode: Op, request_id: int,
               task: asyncio.Task[dict[str, object]]) -> None:
        """Write the reply of a request that ran as a task."""
        error = task.exception() if not task.cancelled() else None
        if self.transport.is_closing():
            if error is not None:
                log.warning("%s failed after its requester left: %s",
                            opcode.name, error)
            return
        if isinstance(error, TmemError):
            self.transport.write(frames.error_reply(opcode, request_id,
                                                    error))
        elif error is not None or task.cancelled():
            self.daemon.connections.internal_errors += 1
            log.error("%s failed: %r", opcode.name, error)
            self.transport.write(frames.error_reply(
                opcode, request_id, ServerError(f"{opcode.name} failed: "
                                                f"{error!r}")))
        else:
            self.transport.writelines(frames.ok_reply(
                opcode, request_id, frames.encode_json(task.result())))

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.greeted()
        self.daemon.links.discard(self)
        if self.session is not None:
            self.daemon.dispatcher.restores.abort_owned_by(self.session)
            self.daemon.table.detach(self.session)
            self.session = None


def _unservable(what: str, address: str, error: OSError) -> InvalidArgument:
    return InvalidArgument(f"{what} address {address!r} cannot be served: "
                           f"{error.strerror or error}")


def _bind_unix(path: Path, mode: int) -> socket.socket:
    """A listening Unix socket at `path`.

    It refuses to replace anything but a stale socket (a live one belongs
    to another daemon; any other file is not ours), and it appears at
    `path` only once it listens with its final mode: bound and set up
    under a temporary name, then renamed, so a client never finds a
    socket that refuses it, nor one more open than asked.
    """
    if path == default_socket():
        _make_parent(path)
    elif not path.parent.is_dir():
        raise InvalidArgument(f"socket folder {str(path.parent)!r} does "
                              "not exist (only the default one is made)")
    _remove_stale(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(temporary))
        os.chmod(temporary, mode)
        sock.listen(128)
        os.rename(temporary, path)
    except OSError as error:
        sock.close()
        temporary.unlink(missing_ok=True)
        raise InvalidArgument(
            f"socket {str(path)!r} cannot be created: "
            f"{error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidArgument(
            f"socket folder {str(path.parent)!r} cannot be created: "
            f"{error.strerror or error}") from None


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidArgument(
            f"socket path {str(path)!r} exists and is not a socket: tmem "
            "will not replace it")
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # a stale socket: nobody listens there
    else:
        raise InvalidArgument(
            f"socket {str(path)!r} is in use: another server (a tmem "
            "daemon?) listens there")
    finally:
        probe.close()


def run(config: Config) -> int:
    """Serve until stopped (the body of `tmem serve`); return the exit
    status: 1 if persistent pages were lost at shutdown, else 0."""
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    daemon = Daemon(config)
    runner(daemon.serve_forever())
    return 1 if daemon.lost_pages else 0
