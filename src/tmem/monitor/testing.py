"""Stand-ins for the daemon: an embedded host behind `ControlAPI`, and
real page traffic (the fake clock is `tmem.testing.FakeClock`).

They let the monitor be tested without a daemon process, and keep its
tests honest: the numbers on screen come from a real engine doing real
puts and gets of this machine's pages.

Rules:
- `EmbeddedControl` forwards to a `tmem.Host`.  While `disconnect()`ed
  every call raises ConnectionLost, as a daemon that went away would;
  `reconnect()` brings it back with its state intact.  With `admin=False`
  reads work and every action raises PermissionDenied, as a daemon does
  for a connection that is not an admin's.
- `Traffic` runs one thread per client.  Each round puts a batch of
  pages in an ephemeral and a persistent pool, then gets some back, then
  sleeps, so a few threads stay light on a shared 2-core machine.
  `step()` runs one round of every client in the caller's thread, for
  tests that need exact numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType

from tmem.engine.api import ClientRef
from tmem.engine.client import Client
from tmem.engine.errors import (
    ConnectionLost,
    InvalidArgument,
    PermissionDenied,
)
from tmem.engine.handles import UuidLike
from tmem.engine.host import Host
from tmem.engine.pool import Pool
from tmem.engine.stats import Snapshot


class EmbeddedControl:
    """A `ControlAPI` over an embedded host that can play a lost daemon.

    Args:
        host: the engine to control.
        admin: False to refuse every action, as for a non-admin caller.
    """

    def __init__(self, host: Host, *, admin: bool = True) -> None:
        self.host = host
        self.admin = admin
        self.up = True
        self.calls = 0
        """Calls made, answered or not (to watch retries)."""

    def disconnect(self) -> None:
        """Make every call raise ConnectionLost until `reconnect`."""
        self.up = False

    def reconnect(self) -> None:
        self.up = True

    def _reach(self) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionLost(
                "daemon 'embedded' is not answering: connection refused")

    def _act(self, operation: str) -> None:
        self._reach()
        if not self.admin:
            raise PermissionDenied(
                f"{operation!r} needs an admin connection; this one is not")

    def snapshot(self) -> Snapshot:
        self._reach()
        return self.host.snapshot()

    def freeable(self) -> int:
        self._reach()
        return self.host.freeable()

    def freeze(self, ref: ClientRef) -> None:
        self._act("freeze")
        self.host.freeze(ref)

    def thaw(self, ref: ClientRef) -> None:
        self._act("thaw")
        self.host.thaw(ref)

    def set_weight(self, ref: ClientRef, weight: int) -> None:
        self._act("set_weight")
        self.host.set_weight(ref, weight)

    def set_cap(self, ref: ClientRef, cap: int | str | None) -> None:
        self._act("set_cap")
        self.host.set_cap(ref, cap)

    def set_compress(self, ref: ClientRef, compress: str) -> None:
        self._act("set_compress")
        self.host.set_compress(ref, compress)

    def authorize(self, ref: ClientRef, uuid: UuidLike) -> None:
        self._act("authorize")
        self.host.authorize(ref, uuid)

    def revoke(self, ref: ClientRef, uuid: UuidLike) -> None:
        self._act("revoke")
        self.host.revoke(ref, uuid)

    def flush(self, nbytes: int | str) -> int:
        self._act("flush")
        return self.host.flush(nbytes)


class _Tenant:
    """One client's pools and where its next round starts."""

    def __init__(self, client: Client, pages: Sequence[bytes],
                 span: int) -> None:
        self.client = client
        self.cache: Pool = client.new_pool()
        self.swap: Pool = client.new_pool(persistent=True)
        self.pages = pages
        self.span = span
        self.next = 0

    def round(self, batch: int) -> None:
        start, self.next = self.next, self.next + batch
        indexes = [i % self.span for i in range(start, start + batch)]
        items = [(1, i, self.pages[i % len(self.pages)]) for i in indexes]
        self.cache.put_many(items)
        self.swap.put_many(items)

        # read back every other page: ephemeral gets miss what was evicted
        handles = [(1, i) for i in indexes[::2]]
        self.cache.get_many(handles)
        self.swap.get_many(handles)


class Traffic:
    """Threads putting and getting real pages as named clients.

    Args:
        host: where the clients live.
        names: one client (and one thread) per name.
        pages: the real pages to store (e.g. `tmem.corpus.pages(256)`).
        batch: pages per pool per round.
        span: page indexes each pool cycles through, so a persistent pool
            holds at most `span` pages and later puts replace them.
        pause: seconds each thread sleeps between rounds.
    """

    def __init__(self, host: Host, names: Sequence[str],
                 pages: Sequence[bytes], *, batch: int = 16,
                 span: int = 512, pause: float = 0.02) -> None:
        if not pages or batch < 1 or span < 1:
            raise InvalidArgument(
                f"traffic needs pages, batch >= 1 and span >= 1, not "
                f"{len(pages)} pages, batch {batch!r}, span {span!r}")
        self.tenants = [_Tenant(host.client(n), pages, span)
                        for n in names]
        self.batch = batch
        self.pause = pause
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def step(self) -> None:
        """One round for every client, in this thread."""
        for tenant in self.tenants:
            tenant.round(self.batch)

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(t,), daemon=True,
                             name=f"traffic-{t.client.name}")
            for t in self.tenants]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop every thread and wait for it (each ends within a round)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _run(self, tenant: _Tenant) -> None:
        while not self._stop.is_set():
            tenant.round(self.batch)
            self._stop.wait(self.pause)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None,
                 error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
