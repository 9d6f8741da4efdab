"""Which client loses an ephemeral page when the host needs room.

The engine owns the accounting and the per-client LRU order; a policy only
names the client to take the next victim from (its least recently used
page goes).  Persistent pages are never offered to a policy.

The default, `WeightedFair`, takes from the client furthest over its
weighted share of ephemeral memory: the one with the most ephemeral bytes
per unit of weight, counting the page being put as the putter's already
(so a client at its share pays for its own puts).  A client at or under
its share keeps its pages while anyone is over theirs, so weights are a
guarantee, not a hint.  Weight 0
means "no guaranteed share": such clients are drained first.

This is the rule the original documented ("a client over quota evicts its
own pages") with the comparison the right way round; the original's code
had it inverted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Tenant(Protocol):
    """What a policy may read about a client."""

    @property
    def weight(self) -> int: ...

    @property
    def ephemeral_bytes(self) -> int: ...

    @property
    def evictable(self) -> bool: ...


class EvictionPolicy(Protocol):
    """Names the client whose LRU page is evicted next."""

    def choose_victim(self, tenants: Iterable[Tenant],
                      putter: Tenant | None = None,
                      incoming: int = 0) -> Tenant | None:
        """Return a tenant with evictable pages, or None if there is none.

        `putter` is about to add `incoming` ephemeral bytes (the put that
        needs the room), or None when room is made for its own sake.
        """


class WeightedFair:
    """Evict from the client with the most ephemeral bytes per weight,
    counting the page being put as already the putter's."""

    def choose_victim(self, tenants: Iterable[Tenant],
                      putter: Tenant | None = None,
                      incoming: int = 0) -> Tenant | None:
        best: Tenant | None = None
        best_score = -1.0
        for tenant in tenants:
            if not tenant.evictable:
                continue
            held = tenant.ephemeral_bytes
            if tenant is putter:
                held += incoming
            weight = tenant.weight
            score = float("inf") if weight == 0 else held / weight
            if score > best_score:
                best, best_score = tenant, score
        return best
