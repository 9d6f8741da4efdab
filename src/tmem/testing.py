"""Helpers for testing code that uses tmem.

- `FakeClock`: a clock that moves only when told, for `Host(clock=...)`
  and the daemon's session table.
- `daemon_in_thread`: a real daemon on a real Unix socket, serving from
  a background thread until the `with` block ends; `call_in_loop` runs a
  function on its event loop, as the daemon's own code would.
- `break_connection`: cut a client's socket as a network blip would.
- `wait_for`: poll a condition instead of sleeping a guessed time.

Rules: nothing here fakes the wire; a test that needs a daemon talks to
a real one, so the bytes it sees are the bytes users see.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tmem.client.sync import RemoteClient
from tmem.server.config import Config
from tmem.server.daemon import Daemon


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def daemon_in_thread(socket: Path, **settings: Any) -> Iterator[Daemon]:
    """Run a daemon on `socket` in a thread; stop it on exit.

    `settings` are `Config` fields (capacity, grace, tcp, ...); a `clock`
    setting is passed to the daemon instead.
    """
    clock = settings.pop("clock", None)
    config = Config(socket=socket, **settings)
    config.check()
    daemon = Daemon(config, clock) if clock else Daemon(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            await daemon.start()
        except BaseException as error:
            failure.append(error)
            started.set()
            return
        started.set()
        await daemon.wait_stopped()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),),
                              name="tmem-daemon", daemon=True)
    thread.start()
    started.wait(10)
    if failure:
        raise failure[0]
    try:
        yield daemon
    finally:
        loop.call_soon_threadsafe(daemon.request_stop, "test end")
        thread.join(10)
        loop.close()


def call_in_loop(daemon: Daemon, function: Any, *args: Any) -> Any:
    """Run `function(*args)` on the daemon's event loop thread, wait for
    the result (engine state must only be touched from there)."""
    loop = daemon.loop
    assert loop is not None
    future = asyncio.run_coroutine_threadsafe(_call(function, *args), loop)
    return future.result(10)


async def _call(function: Any, *args: Any) -> Any:
    return function(*args)


def break_connection(client: RemoteClient) -> None:
    """Cut the socket under the client, as a network blip would; its
    next call reconnects and resumes the session."""
    sock = client._wire._sock
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll `condition` until it is true; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{condition!r} was not true within "
                                 f"{timeout:g} s")
        time.sleep(0.02)
