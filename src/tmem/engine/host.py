"""The host: the one authority over a pool of memory lent to clients.

Rules:
- `capacity` bounds the accounted bytes the host holds: each page's payload
  (counted once when dedup shares it) plus per-page metadata
  (`PAGE_METADATA`, and `LRU_METADATA` more for ephemeral pages).
- Room for a put is made by evicting ephemeral pages: first the pool
  owner's own if the owner is over its cap (the owner is billed for a
  pool's pages: its creator, or for a shared pool the sharer who took it
  over), then victims chosen by the eviction policy.  Persistent pages
  are never evicted.  When nothing evictable is
  left the put is refused and counted (`refused_full` / `refused_cap`).
- Freeable bytes are what eviction could free now: all ephemeral memory.
- Settings (weight, cap, compression, freeze, shared-pool auth) are the
  host's to change, never a client's own.
- Dedup is opt-in: clients share payloads only within a named dedup group,
  because sharing across tenants is a side channel.  `Host(dedup=True)`
  puts every client in one host-wide group unless it asks otherwise.

Concurrency: every method of the public face (api.py) takes the one host
lock (`Host.lock`, not re-entrant) for its whole duration, so a host may
be driven from many threads.  The other methods are for the engine's own
modules and for the daemon, which holds the lock around them: each says
"lock held" in its docstring or stands under a heading that does.  There
is no other lock, hence no lock order to keep.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeAlias

from tmem.engine import state
from tmem.engine.client import Client
from tmem.engine.codecs import Codec, codec_named
from tmem.engine.errors import (
    CheckFailed,
    InvalidArgument,
    LimitExceeded,
    NoSuchClient,
    PermissionDenied,
)
from tmem.engine.eviction import EvictionPolicy, WeightedFair
from tmem.engine.handles import (
    UuidLike,
    check_flag,
    check_name,
    parse_size,
    parse_uuid,
)
from tmem.engine.pagestore import DedupTable, Entry, payload_size
from tmem.engine.pool import SLOT_BITS, PoolContents
from tmem.engine.stats import (
    HostStats,
    OpCounts,
    PageCounts,
    Snapshot,
)

ClientRef: TypeAlias = Client | int | str
HOST_DEDUP_GROUP = "host"
MAX_WEIGHT = 1_000_000
"""The largest client weight (weights are relative; 100 is the default)."""


class Host:
    """A pool of memory lent to clients page by page.

    Args:
        capacity: bytes the host may hold, e.g. "512MiB" or an int.
        compress: default codec for clients: "lz4", "zstd", "zstd:N" or
            "none".
        dedup: True to share identical ephemeral pages among all clients
            that do not choose a group of their own.
        max_pools: pool slots per client (the original's 16).
        max_clients: clients the host accepts at once.
        max_shared_pools: shared pools the host holds at once.
        shared_auth: require `authorize` before a client joins a shared
            pool (as the original from Xen 4.12).
        policy: chooses eviction victims (default `WeightedFair`).
        clock: seconds, monotonic; stamped on snapshots.
    """

    def __init__(self, capacity: int | str = "512MiB", compress: str = "lz4",
                 dedup: bool = False, *, max_pools: int = 16,
                 max_clients: int = 1024, max_shared_pools: int = 16,
                 shared_auth: bool = True,
                 policy: EvictionPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= max_pools <= 1 << SLOT_BITS:
            raise InvalidArgument(
                f"max_pools {max_pools!r} must be in 1..{1 << SLOT_BITS}")
        self.lock = threading.Lock()
        self.capacity = parse_size(capacity, "capacity")
        self.compress = compress
        codec_named(compress)  # validate early
        self.dedup = check_flag(dedup, "dedup")
        self.max_pools = max_pools
        self.max_clients = max_clients
        self.max_shared_pools = max_shared_pools
        self.shared_auth = shared_auth
        self.policy: EvictionPolicy = policy or WeightedFair()
        self.clock = clock
        self.used = self.used_peak = 0
        self._clients: dict[int, Client] = {}
        self._next_client_id = 1
        self._shared: dict[uuidlib.UUID, PoolContents] = {}
        self._dedup_groups: dict[str, DedupTable] = {}
        self._retired_ephemeral = OpCounts()
        self._retired_persistent = OpCounts()
        self.evictions = 0
        self._marks: dict[int, tuple[int, int]] = {}
        """client id -> (activity seen, host evictions when it changed)"""

    def __repr__(self) -> str:
        return (f"<Host {len(self._clients)} clients, "
                f"{self.used}/{self.capacity} bytes>")

    # -- clients -------------------------------------------------------------

    def client(self, name: str, weight: int = 100,
               cap: int | str | None = None, compress: str | None = None,
               dedup: bool | str | None = None) -> Client:
        """Create a client.

        Args:
            name: shown in stats; need not be unique (ids are).
            weight: share of ephemeral memory relative to other clients.
            cap: most bytes the client may hold, or None.
            compress: codec for the client's pages (default: the host's).
            dedup: None follows the host, False opts out, True joins the
                host-wide group, a string joins that named group.
        """
        settings = self.check_client_settings(name, weight, cap, compress)
        with self.lock:
            return self.add_client(*settings, dedup)

    def check_client_settings(self, name: object, weight: object,
                              cap: object, compress: object
                              ) -> tuple[str, int, int | None, Codec | None]:
        """Validate a new client's settings; raise naming the bad one."""
        checked_name = check_name(name)
        checked_cap = None if cap is None else parse_size(cap, "cap")
        if compress is not None and not isinstance(compress, str):
            raise InvalidArgument(f"compress {compress!r} must be a string")
        codec = codec_named(self.compress if compress is None else compress)
        return checked_name, _check_weight(weight), checked_cap, codec

    def add_client(self, name: str, weight: int, cap: int | None,
                   codec: Codec | None, dedup: bool | str | None) -> Client:
        """Create a client from checked settings (lock held)."""
        if len(self._clients) >= self.max_clients:
            raise LimitExceeded(
                f"host already has {len(self._clients)} clients, the "
                "most it accepts (max_clients)")
        client = Client(self, self._next_client_id, name, weight, cap,
                        codec, self._dedup_table(dedup))
        self._clients[client.client_id] = client
        self._next_client_id += 1
        return client

    def _dedup_table(self, dedup: bool | str | None) -> DedupTable | None:
        if dedup is None:
            dedup = self.dedup
        if dedup is False:
            return None
        group = HOST_DEDUP_GROUP if dedup is True else str(dedup)
        table = self._dedup_groups.get(group)
        if table is None:
            table = self._dedup_groups[group] = DedupTable(group)
        return table

    def clients(self) -> list[Client]:
        """The live clients, by id."""
        with self.lock:
            return list(self._clients.values())

    def find_client(self, ref: ClientRef) -> Client:
        """Return the live client with this id or name (or the client)."""
        with self.lock:
            return self._find(ref)

    def _find(self, ref: ClientRef) -> Client:
        if isinstance(ref, Client):
            if ref.alive and ref.host is self:
                return ref
            raise NoSuchClient(f"client {ref.name!r} is not on this host")
        if isinstance(ref, int) and not isinstance(ref, bool):
            client = self._clients.get(ref)
            if client is None:
                raise NoSuchClient(f"no client has id {ref!r}")
            return client
        matches = [c for c in self._clients.values() if c.name == ref]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NoSuchClient(f"no client is named {ref!r}")
        ids = ", ".join(str(c.client_id) for c in matches)
        raise NoSuchClient(
            f"client name {ref!r} is ambiguous (ids {ids}); use an id")

    def remove_client(self, client: Client) -> None:
        """Destroy a client's pools and forget it (lock held)."""
        for handle in [p for p in client.slots if p is not None]:
            client.release_pool(handle)
        client.alive = False
        del self._clients[client.client_id]
        self._marks.pop(client.client_id, None)
        self._retired_ephemeral += client.retired_ephemeral
        self._retired_persistent += client.retired_persistent

    # -- control operations (the authority's) --------------------------------

    def freeze(self, ref: ClientRef) -> None:
        """Refuse the client's puts of new handles until `thaw`."""
        with self.lock:
            self._find(ref).frozen = True

    def thaw(self, ref: ClientRef) -> None:
        """Accept the client's puts again."""
        with self.lock:
            self._find(ref).frozen = False

    def set_weight(self, ref: ClientRef, weight: int) -> None:
        checked = _check_weight(weight)
        with self.lock:
            self._find(ref).weight = checked

    def set_cap(self, ref: ClientRef, cap: int | str | None) -> None:
        """Cap the bytes a client may hold (None: no cap).  A client above a
        new cap keeps what it has; its next puts evict its own pages."""
        checked = None if cap is None else parse_size(cap, "cap")
        with self.lock:
            self._find(ref).cap = checked

    def set_compress(self, ref: ClientRef, compress: str) -> None:
        """Change the codec for the client's new pages; stored pages keep
        theirs."""
        codec = codec_named(compress)
        with self.lock:
            self._find(ref).codec = codec

    def authorize(self, ref: ClientRef, uuid: UuidLike) -> None:
        """Let a client join the shared pool with this UUID."""
        parsed = parse_uuid(uuid)
        with self.lock:
            client = self._find(ref)
            if parsed not in client.auth and \
                    len(client.auth) >= self.max_shared_pools:
                raise LimitExceeded(
                    f"client {client.name!r} already holds "
                    f"{len(client.auth)} shared-pool authorisations")
            client.auth.add(parsed)

    def revoke(self, ref: ClientRef, uuid: UuidLike) -> None:
        """Withdraw an authorisation; pools already joined stay joined."""
        parsed = parse_uuid(uuid)
        with self.lock:
            self._find(ref).auth.discard(parsed)

    def set_capacity(self, capacity: int | str) -> int:
        """Lend more or less memory (e.g. as guests balloon); return the
        bytes evicted to get under the new capacity.  Persistent pages
        are never evicted: if they alone exceed it, puts are refused
        until enough are flushed."""
        checked = parse_size(capacity, "capacity")
        with self.lock:
            self.capacity = checked
            return self.evict(max(0, self.used - checked))

    def freeable(self) -> int:
        """Bytes eviction could free now."""
        with self.lock:
            return self._freeable()

    def _freeable(self) -> int:
        total = sum(c.ephemeral_bytes for c in self._clients.values())
        saved = sum(t.saved_bytes for t in self._dedup_groups.values())
        return total - saved

    def flush(self, nbytes: int | str) -> int:
        """Evict ephemeral pages until `nbytes` are freed (or none are
        left); return the bytes freed."""
        target = parse_size(nbytes, "flush size")
        with self.lock:
            return self.evict(target)

    def evict(self, nbytes: int) -> int:
        """`flush` (lock held)."""
        start = self.used
        while start - self.used < nbytes:
            victim = self.policy.choose_victim(self._clients.values())
            if victim is None:
                break
            assert isinstance(victim, Client)
            victim.evict_one()
        return start - self.used

    # -- saved state -----------------------------------------------------------

    def save(self, ref: ClientRef, file: BinaryIO,
             ephemeral: bool = False) -> int:
        """Write a client's state as a stream (see state.py); return the
        pages written.  Ephemeral pages are written only if asked for."""
        with self.lock:
            writer = state.StreamWriter(file.write)
            state.write_client(writer, self._find(ref), ephemeral)
            writer.end()
            return writer.pages

    def restore(self, file: BinaryIO, as_name: str | None = None
                ) -> list[Client]:
        """Read a whole stream, check it, then create its clients.

        Raises:
            StreamError: truncated, corrupted, foreign or unsupported.
            LimitExceeded: it does not fit; nothing was restored.
        """
        images = state.read_stream(file.read)
        with self.lock:
            return state.apply(self, images, as_name)

    # -- the data path's helpers (lock held) ---------------------------------

    def idle_since(self, client: Client) -> int | None:
        """When (counted in host evictions) the client last stopped using
        its pools, if it has been idle while the host evicted a quarter
        of its ephemeral pages (at least 64); else None (active)."""
        activity = client.activity
        seen, changed_at = self._marks.get(client.client_id, (-1, 0))
        if activity != seen:
            self._marks[client.client_id] = (activity, self.evictions)
            return None
        pages = sum(c.ephemeral_pages for c in self._clients.values())
        if self.evictions - changed_at > max(64, pages // 4):
            return changed_at
        return None

    def account(self, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.used_peak:
            self.used_peak = self.used

    def make_room(self, contents: PoolContents, entry: Entry,
                  payload_is_new: bool) -> str | None:
        """Evict until the entry fits; return a refusal counter or None.

        The pool's owner is billed for the page, so its cap applies and it
        counts as the one adding bytes when the policy picks a victim.
        """
        payer = contents.owner
        billed = contents.metadata + payload_size(entry)
        needed = billed if payload_is_new else contents.metadata

        # the payer's cap: it pays with its own ephemeral pages
        if payer.cap is not None:
            while payer.used + billed > payer.cap:
                if not payer.lru:
                    return "refused_cap"
                payer.evict_one()

        # the host's capacity: the policy picks who pays
        incoming = 0 if contents.persistent else billed
        while self.used + needed > self.capacity:
            victim = self.policy.choose_victim(
                self._clients.values(), payer, incoming)
            if victim is None:
                return "refused_full"
            assert isinstance(victim, Client)
            victim.evict_one()
        return None

    def join_shared(self, client: Client, slot: int, uuid: uuidlib.UUID,
                    trusted: bool = False) -> PoolContents:
        """Return the shared pool's contents, creating it (owned by the
        client's `slot`) if need be."""
        if self.shared_auth and not trusted and uuid not in client.auth:
            raise PermissionDenied(
                f"client {client.name!r} is not authorised for shared pool "
                f"{str(uuid)!r}")
        contents = self._shared.get(uuid)
        if contents is None:
            if len(self._shared) >= self.max_shared_pools:
                raise LimitExceeded(
                    f"host already has {len(self._shared)} shared pools, "
                    "the most it holds (max_shared_pools)")
            contents = PoolContents(False, True, uuid, client.dedup,
                                    client, slot)
            self._shared[uuid] = contents
        return contents

    def forget_shared(self, uuid: uuidlib.UUID) -> None:
        del self._shared[uuid]

    # -- snapshots and checks ------------------------------------------------

    def stats(self) -> HostStats:
        """A frozen snapshot of the host as a whole."""
        with self.lock:
            return self._host_stats()

    def snapshot(self) -> Snapshot:
        """Host, every client and every pool, taken at one instant."""
        with self.lock:
            clients = tuple(c.snapshot() for c in self._clients.values())
            pools = tuple(p.snapshot() for c in self._clients.values()
                          for p in c.slots if p is not None)
            return Snapshot(self._host_stats(), clients, pools)

    def _host_stats(self) -> HostStats:
        ephemeral_ops = self._retired_ephemeral
        persistent_ops = self._retired_persistent
        for client in self._clients.values():
            snap = client.snapshot()
            ephemeral_ops += snap.ephemeral_ops
            persistent_ops += snap.persistent_ops
        ephemeral = persistent = PageCounts()
        for contents in self._all_contents():
            if contents.persistent:
                persistent += contents.counts()
            else:
                ephemeral += contents.counts()
        ephemeral = dataclasses.replace(ephemeral, evictions=self.evictions)
        return HostStats(
            taken_at=self.clock(), capacity=self.capacity, used=self.used,
            used_peak=self.used_peak, freeable=self._freeable(),
            clients=len(self._clients),
            pools=sum(1 for _ in self._all_contents()),
            shared_pools=len(self._shared),
            ephemeral_content=ephemeral, persistent_content=persistent,
            dedup_saved_bytes=sum(
                t.saved_bytes for t in self._dedup_groups.values()),
            dedup_collisions=sum(
                t.collisions for t in self._dedup_groups.values()),
            ephemeral_ops=ephemeral_ops, persistent_ops=persistent_ops,
            compress=self.compress, dedup=self.dedup)

    def _all_contents(self) -> Iterator[PoolContents]:
        """Every pool once (a shared pool through its owner)."""
        for client in self._clients.values():
            for handle in client.slots:
                if handle is None:
                    continue
                contents = handle._contents
                if contents.owner is client and \
                        contents.owner_slot == handle.pool_id:
                    yield contents

    def check(self) -> None:
        """Recompute all accounting from the stored pages; raise CheckFailed
        on any mismatch."""
        with self.lock:
            _Audit(self).run()


def _check_weight(weight: object) -> int:
    if type(weight) is not int or not 0 <= weight <= MAX_WEIGHT:
        raise InvalidArgument(
            f"weight {weight!r} must be an int in 0..{MAX_WEIGHT}")
    return weight


class _Audit:
    """Recounts everything `Host.check` verifies."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.used = 0
        # (dedup group, id(payload)) -> handles and payload length
        self.payloads: dict[tuple[str, int], int] = {}
        self.payload_sizes: dict[tuple[str, int], int] = {}

    def run(self) -> None:
        billed: dict[int, list[int]] = {
            cid: [0, 0, 0, 0] for cid in self.host._clients}
        lru_keys: dict[int, set[int]] = {
            cid: set() for cid in self.host._clients}
        for contents in self.host._all_contents():
            self._check_contents(contents, billed, lru_keys)
        for client in self.host._clients.values():
            self._check_client(client, billed[client.client_id],
                               lru_keys[client.client_id])
        self._check_dedup()
        expected = self.used + sum(self.payload_sizes.values())
        _expect(self.host.used == expected, "host used bytes",
                self.host.used, expected)

    def _check_contents(self, contents: PoolContents,
                        billed: dict[int, list[int]],
                        lru_keys: dict[int, set[int]]) -> None:
        recount = PoolContents(contents.persistent, contents.shared,
                               contents.uuid, None, contents.owner, 0)
        for oid, pages in contents.objects.items():
            _expect(bool(pages), f"object {oid} emptiness", 0, ">0")
            for index, entry in pages.items():
                recount._count(entry, +1)
                recount.pages += 1
                self._note_payload(entry, contents)
                if not contents.persistent:
                    lru_keys[contents.owner.client_id].add(
                        contents.lru_key(oid, index))
        for name in ("pages", "bytes", "raw_pages", "compressed_pages",
                     "compressed_bytes", "same_filled_pages", "zero_pages"):
            _expect(getattr(contents, name) == getattr(recount, name),
                    f"pool {name}", getattr(contents, name),
                    getattr(recount, name))
        row = billed[contents.owner.client_id]
        offset = 2 if contents.persistent else 0
        row[offset] += contents.pages
        row[offset + 1] += contents.bytes

    def _note_payload(self, entry: Entry, contents: PoolContents) -> None:
        self.used += contents.metadata
        if type(entry) is not bytes:
            return
        if contents.dedup is None:
            self.used += len(entry)
            return
        key = (contents.dedup.name, id(entry))
        self.payloads[key] = self.payloads.get(key, 0) + 1
        self.payload_sizes[key] = len(entry)

    def _check_client(self, client: Client, row: list[int],
                      keys: set[int]) -> None:
        actual = [client.ephemeral_pages, client.ephemeral_bytes,
                  client.persistent_pages, client.persistent_bytes]
        _expect(actual == row, f"client {client.name!r} billing", actual,
                row)
        _expect(set(client.lru) == keys, f"client {client.name!r} LRU",
                len(client.lru), len(keys))

    def _check_dedup(self) -> None:
        for table in self.host._dedup_groups.values():
            for key, refs in table.references().items():
                found = self.payloads.get((table.name, key), 0)
                _expect(found == refs, f"dedup group {table.name!r} refs",
                        refs, found)


def _expect(ok: bool, what: str, actual: object, expected: object) -> None:
    if not ok:
        raise CheckFailed(
            f"{what} is {actual!r} but the stored pages say {expected!r}")
