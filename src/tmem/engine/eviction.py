"""Which client loses an ephemeral page when the host needs room.

The engine owns the accounting and the per-client LRU order; a policy only
names the client to take the next victim from (its least recently used
page goes).  Persistent pages are never offered to a policy.

The default, `WeightedFair`, approximates one global LRU corrected by
weights, with no per-page timestamps:
1. An *idle* client (one that has not put or got a page while the host
   evicted a quarter of its ephemeral pages, see Host.idle_since) holds
   the oldest pages there are, so it pays first, the longest idle first.
   This is what lets memory flow from a guest at rest to a busy one.
2. Among active clients, the one furthest over its weighted share pays:
   the most ephemeral bytes per unit of weight, counting the page being
   put as the putter's already (so a client at its share pays for its
   own puts).  A client at or under its share keeps its pages while
   anyone is over theirs, so between clients that both want memory the
   weights are a guarantee, not a hint.  Weight 0 means "no guaranteed
   share": such clients are drained first.

Rule 2 is the original's "a client over quota evicts its own pages" with
the comparison the right way round (its code had it inverted); rule 1
stands in for the original's global LRU list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Candidate(Protocol):
    """What a policy may read about a client."""

    @property
    def weight(self) -> int: ...

    @property
    def ephemeral_bytes(self) -> int: ...

    @property
    def evictable(self) -> bool: ...

    def idle_since(self) -> int | None:
        """When (in host evictions) the client went idle, or None.

        Asking notes the client's activity, so ask once per choice.
        """


class EvictionPolicy(Protocol):
    """Names the client whose LRU page is evicted next."""

    def choose_victim(self, clients: Iterable[Candidate],
                      putter: Candidate | None = None,
                      incoming: int = 0) -> Candidate | None:
        """Return a client with evictable pages, or None if there is none.

        `putter` is about to add `incoming` ephemeral bytes (the put that
        needs the room), or None when room is made for its own sake.
        """


class WeightedFair:
    """Idle clients first, then the most ephemeral bytes per weight."""

    def choose_victim(self, clients: Iterable[Candidate],
                      putter: Candidate | None = None,
                      incoming: int = 0) -> Candidate | None:
        candidates = [c for c in clients if c.evictable]
        idle = [(since, c) for c in candidates
                if (since := c.idle_since()) is not None]
        if idle:
            return min(idle, key=lambda pair: pair[0])[1]
        best: Candidate | None = None
        best_score = -1.0
        for client in candidates:
            held = client.ephemeral_bytes
            if client is putter:
                held += incoming
            weight = client.weight
            score = float("inf") if weight == 0 else held / weight
            if score > best_score:
                best, best_score = client, score
        return best
