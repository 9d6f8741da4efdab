"""Clients: the users of a host, each with its own pools and settings.

A client is what the original called a guest: it creates pools, puts and
gets pages through them, and is billed for the memory its pages take.

Rules:
- A client has at most `Host.max_pools` pool slots; a pool id is a slot
  number, the lowest free one, as in the original.
- A client's ephemeral pages (in its private pools and in shared pools it
  owns) sit in one LRU, oldest first; eviction takes from its front.
- A client may join a shared pool only if the host authorised it for that
  UUID (when the host enforces shared auth).  Joining a pool it already
  uses returns the same handle.
- `close()` destroys the client's private pools at once, leaves its shared
  pools (their pages stay for the other sharers), and the host forgets
  the client.

Settings (weight, cap, compression, freezing, auth) are changed through
the host, which is the authority; a client cannot change its own.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import OrderedDict
from typing import TYPE_CHECKING

from tmem.engine.codecs import Codec
from tmem.engine.errors import (
    InvalidArgument,
    LimitExceeded,
    NoSuchClient,
    NoSuchPool,
)
from tmem.engine.handles import (
    UuidLike,
    check_flag,
    parse_pool_flags,
    parse_uuid,
)
from tmem.engine.pagestore import DedupTable
from tmem.engine.pool import INDEX_MASK, SLOT_BITS, SLOT_MASK, Pool, PoolContents
from tmem.engine.stats import ClientStats, OpCounts

if TYPE_CHECKING:
    from tmem.engine.host import Host


class Client:
    """One client of a host.  Create with `Host.client(name)`."""

    def __init__(self, host: Host, client_id: int, name: str, weight: int,
                 cap: int | None, codec: Codec | None,
                 dedup: DedupTable | None) -> None:
        self.host = host
        self.client_id = client_id
        self.name = name
        self.weight = weight
        self.cap = cap
        self.codec = codec
        self.dedup = dedup
        self.frozen = False
        self.auth: set[uuidlib.UUID] = set()
        self.slots: list[Pool | None] = [None] * host.max_pools
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.ephemeral_pages = self.ephemeral_bytes = 0
        self.persistent_pages = self.persistent_bytes = 0
        self.bytes_peak = self.evictions = 0
        self.retired_ephemeral = OpCounts()
        self.retired_persistent = OpCounts()
        self.alive = True

    def __repr__(self) -> str:
        return f"<Client {self.client_id} {self.name!r}>"

    @property
    def compress(self) -> str:
        """The codec new pages are compressed with ("none" for raw)."""
        return "none" if self.codec is None else self.codec.name

    @property
    def evictable(self) -> bool:
        return bool(self.lru)

    @property
    def activity(self) -> int:
        """Puts and gets so far (a counter that moves while in use)."""
        return sum(h._ops.puts + h._ops.gets for h in self.slots
                   if h is not None)

    def idle_since(self) -> int | None:
        """See Host.idle_since (lock held)."""
        return self.host.idle_since(self)

    @property
    def used(self) -> int:
        """Accounted bytes billed to this client."""
        return self.ephemeral_bytes + self.persistent_bytes

    # -- public: what the client itself calls -------------------------------

    def new_pool(self, persistent: bool = False, shared: bool = False,
                 uuid: UuidLike | None = None) -> Pool:
        """Create a pool, or join the shared pool named by `uuid`.

        Raises:
            InvalidArgument: shared without a uuid, uuid without shared, or
                shared and persistent together.
            PermissionDenied: not authorised for that shared pool.
            LimitExceeded: no free pool slot, or too many shared pools.
        """
        check_flag(persistent, "persistent")
        check_flag(shared, "shared")
        parsed = None if uuid is None else parse_uuid(uuid)
        with self.host.lock:
            self.check_alive()
            return self.open_pool(persistent, shared, parsed)

    def new_pool_from_flags(self, flags: int,
                            uuid: UuidLike | None = None) -> Pool:
        """`new_pool` taking flags in the original ABI layout."""
        persistent, shared = parse_pool_flags(flags)
        return self.new_pool(persistent, shared, uuid)

    def pool(self, pool_id: int) -> Pool:
        """Return the live pool with this id, or raise NoSuchPool."""
        with self.host.lock:
            self.check_alive()
            return self.find_pool(pool_id)

    def pools(self) -> list[Pool]:
        """The client's live pools, by id."""
        with self.host.lock:
            return [p for p in self.slots if p is not None]

    def stats(self) -> ClientStats:
        """A frozen snapshot of the client."""
        with self.host.lock:
            return self.snapshot()

    def close(self) -> None:
        """Destroy private pools, leave shared ones, leave the host.

        Closing twice is harmless.
        """
        with self.host.lock:
            if self.alive:
                self.host.remove_client(self)

    destroy = close

    # -- internal (lock held) ----------------------------------------------

    def check_alive(self) -> None:
        if not self.alive:
            raise NoSuchClient(
                f"client {self.name!r} (id {self.client_id}) is closed")

    def find_pool(self, pool_id: object) -> Pool:
        if type(pool_id) is not int or not 0 <= pool_id < len(self.slots):
            raise NoSuchPool(
                f"pool id {pool_id!r} is out of range: client "
                f"{self.name!r} has pool ids 0..{len(self.slots) - 1}")
        handle = self.slots[pool_id]
        if handle is None:
            raise NoSuchPool(
                f"pool id {pool_id} names no pool of client {self.name!r}")
        return handle

    def open_pool(self, persistent: bool, shared: bool,
                  uuid: uuidlib.UUID | None, pool_id: int | None = None,
                  trusted: bool = False) -> Pool:
        """Create or join a pool in a free slot (or in `pool_id`).

        `trusted` (a restore by the host) skips the shared-pool auth check.
        """
        if shared and persistent:
            raise InvalidArgument(
                "a pool cannot be both shared and persistent: shared "
                "persistent pools are not supported")
        if shared and uuid is None:
            raise InvalidArgument("a shared pool needs a uuid")
        if not shared and uuid is not None:
            raise InvalidArgument(
                f"uuid {str(uuid)!r} given for a private pool; only shared "
                "pools have a uuid")
        if shared:
            assert uuid is not None
            for handle in self.slots:
                if handle is not None and handle.uuid == uuid:
                    return handle
        slot = self._free_slot() if pool_id is None else \
            self._claim_slot(pool_id)

        if shared:
            assert uuid is not None
            contents = self.host.join_shared(self, slot, uuid, trusted)
        else:
            contents = PoolContents(persistent, False, None,
                                    None if persistent else self.dedup,
                                    self, slot)
        handle = Pool(self, slot, contents)
        contents.handles.append(handle)
        self.slots[slot] = handle
        return handle

    def _free_slot(self) -> int:
        for slot, handle in enumerate(self.slots):
            if handle is None:
                return slot
        raise LimitExceeded(
            f"client {self.name!r} already has {len(self.slots)} pools, "
            "the most a client may have")

    def _claim_slot(self, pool_id: int) -> int:
        if not 0 <= pool_id < len(self.slots):
            raise InvalidArgument(
                f"pool id {pool_id!r} is out of range 0..{len(self.slots)-1}")
        if self.slots[pool_id] is not None:
            raise InvalidArgument(
                f"pool id {pool_id} of client {self.name!r} is in use")
        return pool_id

    def release_pool(self, handle: Pool) -> None:
        """Take a pool handle out of the client (destroy or leave)."""
        contents = handle._contents
        contents.handles.remove(handle)
        if not contents.handles:
            contents.clear()
            if contents.shared:
                assert contents.uuid is not None
                self.host.forget_shared(contents.uuid)
        elif contents.owner is self and contents.owner_slot == handle.pool_id:
            self._hand_over(contents, contents.handles[0])

        self.slots[handle.pool_id] = None
        handle._alive = False
        retired = handle._ops.snapshot()
        if contents.persistent:
            self.retired_persistent += retired
        else:
            self.retired_ephemeral += retired

    def _hand_over(self, contents: PoolContents, heir: Pool) -> None:
        """Move a shared pool's billing and LRU entries to another sharer."""
        old_slot = contents.owner_slot
        keys = [k for k in self.lru if k & SLOT_MASK == old_slot]
        for key in keys:
            del self.lru[key]
        self.bill(False, -contents.pages, -contents.bytes)

        new_owner = heir._client
        contents.owner, contents.owner_slot = new_owner, heir.pool_id
        new_owner.bill(False, contents.pages, contents.bytes)
        for key in keys:
            new_owner.lru[(key >> SLOT_BITS << SLOT_BITS) | heir.pool_id] = \
                None

    def bill(self, persistent: bool, pages: int, nbytes: int) -> None:
        """Add (or with negative numbers, remove) pages billed to us."""
        if persistent:
            self.persistent_pages += pages
            self.persistent_bytes += nbytes
        else:
            self.ephemeral_pages += pages
            self.ephemeral_bytes += nbytes
        used = self.ephemeral_bytes + self.persistent_bytes
        if used > self.bytes_peak:
            self.bytes_peak = used

    def evict_one(self) -> None:
        """Evict this client's least recently used ephemeral page."""
        key, _ = self.lru.popitem(last=False)
        handle = self.slots[key & SLOT_MASK]
        assert handle is not None
        contents = handle._contents
        rest = key >> SLOT_BITS
        oid, index = rest >> 32, rest & INDEX_MASK
        contents.remove(oid, contents.objects[oid], index, in_lru=False)
        contents.evictions += 1
        self.evictions += 1
        self.host.evictions += 1

    def snapshot(self) -> ClientStats:
        ephemeral, persistent = self.retired_ephemeral, \
            self.retired_persistent
        live = [p for p in self.slots if p is not None]
        for handle in live:
            if handle.persistent:
                persistent += handle._ops.snapshot()
            else:
                ephemeral += handle._ops.snapshot()
        return ClientStats(
            client_id=self.client_id, name=self.name, weight=self.weight,
            cap=self.cap, frozen=self.frozen, compress=self.compress,
            dedup_group=None if self.dedup is None else self.dedup.name,
            pools=len(live), ephemeral_pages=self.ephemeral_pages,
            persistent_pages=self.persistent_pages,
            ephemeral_bytes=self.ephemeral_bytes,
            persistent_bytes=self.persistent_bytes,
            bytes_peak=self.bytes_peak, evictions=self.evictions,
            ephemeral_ops=ephemeral, persistent_ops=persistent)
