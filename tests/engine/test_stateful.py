"""Random operation sequences against a reference model of what must be
present (persistent pools) and what may be present (ephemeral pools).

After every step the host's accounting is recomputed with `check()`.
"""

from __future__ import annotations

import uuid

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import tmem
from tmem import corpus
from tmem.engine.pool import LRU_METADATA, PAGE_METADATA

_REAL = corpus.pages(64, distinct=True)
PAGES = [*_REAL[:12], bytes(4096), b"Z" * 4096, b"12345678" * 512]
SHARED_UUID = uuid.UUID(int=0xC0FFEE)
KINDS = ("ephemeral", "persistent", "shared")

oids = st.integers(0, 2) | st.just(2**192 - 2)
indexes = st.integers(0, 3) | st.just(2**32 - 1)
page_numbers = st.integers(0, len(PAGES) - 1)
clients = st.integers(0, 1)
kinds = st.sampled_from(KINDS)


class EngineMachine(RuleBasedStateMachine):
    """Two clients, each with an ephemeral, a persistent and a shared pool."""

    @initialize(compress=st.sampled_from(["none", "lz4", "zstd"]),
                 dedup=st.booleans(),
                 room=st.integers(4, 30))
    def start(self, compress: str, dedup: bool, room: int) -> None:
        self.host = tmem.Host(
            capacity=room * (4096 + PAGE_METADATA + LRU_METADATA),
            compress=compress, dedup=dedup)
        self.clients = [self.host.client(f"c{n}") for n in (0, 1)]
        self.frozen = [False, False]
        self.pools: dict[tuple[int, str], tmem.Pool] = {}
        self.model: dict[tuple[int, str], dict[tuple[int, int], bytes]] = {}
        for n, client in enumerate(self.clients):
            self.host.authorize(client, SHARED_UUID)
            for kind in KINDS:
                self._open(n, kind)

    def _open(self, n: int, kind: str) -> None:
        client = self.clients[n]
        if kind == "shared":
            pool = client.new_pool(shared=True, uuid=SHARED_UUID)
        else:
            pool = client.new_pool(persistent=kind == "persistent")
        self.pools[n, kind] = pool
        if kind != "shared":
            self.model[n, kind] = {}
        else:
            self.model.setdefault((0, "shared"), {})

    def _model(self, n: int, kind: str) -> dict[tuple[int, int], bytes]:
        return self.model[0, "shared"] if kind == "shared" else \
            self.model[n, kind]

    @rule(n=clients, kind=kinds, oid=oids, index=indexes, p=page_numbers)
    def put(self, n: int, kind: str, oid: int, index: int, p: int) -> None:
        model = self._model(n, kind)
        handle = (oid, index)
        must_refuse = (self.frozen[n] and kind == "persistent"
                       and handle not in model)
        stored = self.pools[n, kind].put(oid, index, PAGES[p])
        if must_refuse:
            assert not stored
        if stored:
            model[handle] = PAGES[p]
        else:
            model.pop(handle, None)

    @rule(n=clients, kind=kinds, oid=oids, index=indexes)
    def get(self, n: int, kind: str, oid: int, index: int) -> None:
        model = self._model(n, kind)
        handle = (oid, index)
        got = self.pools[n, kind].get(oid, index)
        expected = model.get(handle)
        if kind == "persistent":
            assert got == expected
            return
        assert got is None or got == expected, "stale or foreign data"
        if got is None or kind == "ephemeral":
            model.pop(handle, None)

    @rule(n=clients, kind=kinds, oid=oids, index=indexes)
    def get_twice(self, n: int, kind: str, oid: int, index: int) -> None:
        self.get(n, kind, oid, index)
        self.get(n, kind, oid, index)

    @rule(n=clients, kind=kinds, oid=oids, index=indexes)
    def flush_page(self, n: int, kind: str, oid: int, index: int) -> None:
        found = self.pools[n, kind].flush_page(oid, index)
        present = self._model(n, kind).pop((oid, index), None)
        if kind == "persistent":
            assert found == (present is not None)

    @rule(n=clients, kind=kinds, oid=oids)
    def flush_object(self, n: int, kind: str, oid: int) -> None:
        model = self._model(n, kind)
        count = self.pools[n, kind].flush_object(oid)
        gone = [h for h in model if h[0] == oid]
        for h in gone:
            del model[h]
        if kind == "persistent":
            assert count == len(gone)

    @rule(n=clients, frozen=st.booleans())
    def freeze_or_thaw(self, n: int, frozen: bool) -> None:
        (self.host.freeze if frozen else self.host.thaw)(self.clients[n])
        self.frozen[n] = frozen

    @rule(n=clients, pages=st.none() | st.integers(0, 12))
    def set_cap(self, n: int, pages: int | None) -> None:
        cap = None if pages is None else pages * (4096 + PAGE_METADATA)
        self.host.set_cap(self.clients[n], cap)

    @rule(n=clients, weight=st.integers(0, 300))
    def set_weight(self, n: int, weight: int) -> None:
        self.host.set_weight(self.clients[n], weight)

    @rule(n=clients, compress=st.sampled_from(["none", "lz4", "zstd"]))
    def set_compress(self, n: int, compress: str) -> None:
        self.host.set_compress(self.clients[n], compress)

    @rule(nbytes=st.integers(0, 40_000))
    def flush_memory(self, nbytes: int) -> None:
        self.host.flush(nbytes)

    @rule(n=clients, kind=kinds)
    def destroy_and_reopen(self, n: int, kind: str) -> None:
        self.pools[n, kind].destroy()
        other_holds_shared = kind == "shared" and (1 - n, kind) in self.pools
        del self.pools[n, kind]
        if not other_holds_shared:
            self._model(n, kind).clear()
        self._open(n, kind)

    @rule(n=clients, kind=kinds)
    def persistent_pages_all_present(self, n: int, kind: str) -> None:
        if kind != "persistent":
            return
        pool = self.pools[n, kind]
        for (oid, index), page in self._model(n, kind).items():
            assert pool.get(oid, index) == page

    @invariant()
    def accounting_matches_the_data(self) -> None:
        if hasattr(self, "host"):
            self.host.check()
            stats = self.host.stats()
            assert stats.used <= stats.capacity


EngineMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None)
TestEngine = EngineMachine.TestCase
