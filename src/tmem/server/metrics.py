"""Prometheus metrics, made from one snapshot at scrape time.

The engine keeps plain int counters: prometheus_client's labelled
`labels(...).inc()` costs about 1.6 us, as much as an uncompressed put
itself.  So nothing here touches the per-page path: each scrape takes
one snapshot and turns it into metric families.

Rules:
- Names follow Prometheus conventions: `tmem_` prefix, base units
  (`_bytes`, `_pages`), `_total` on counters.  Counters are for what only
  grows (operations, evictions); gauges for current values and settings.
- Host series carry `kind` (ephemeral or persistent); client series add
  `client_id` and `client` (names need not be unique, ids are); pool
  series add `pool_id`, `shared` and `uuid` ("" for a private pool).
- A shared pool's pages appear in the pool series of every sharer, as
  the engine reports them; sum `tmem_pool_*` over `shared="false"` only,
  or use the host and client series, which count each page once.
- Puts refused are one family with a `reason` label (full, cap, frozen),
  duplicate puts one with an `outcome` label (replaced, flushed); every
  other engine counter has a family of its own.  A test checks that
  every OpCounts field is exported.
- `tmem_up` is 1 when the snapshot was taken and 0 when the daemon did
  not answer (ConnectionLost); then nothing else is reported, and the
  scrape itself still succeeds.
- A daemon adds its own counters (`tmem_daemon_*`): connections taken
  in, refused by `reason` (busy, hello, hello_timeout), closed for
  protocol errors, and requests it failed on (internal errors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tmem.engine.errors import ConnectionLost
from tmem.engine.stats import (
    ClientStats,
    HostStats,
    OpCounts,
    PageCounts,
    PoolStats,
    Snapshot,
)
from tmem.protocol.address import parse_host_port

Labels = Mapping[str, str]

# OpCounts field -> (family suffix, extra labels, help)
OP_METRICS: dict[str, tuple[str, Labels, str]] = {
    "puts": ("puts", {}, "Put calls, whatever their outcome."),
    "puts_stored": ("puts_stored", {}, "Puts that stored the page."),
    "refused_full": ("puts_refused", {"reason": "full"},
                     "Puts refused, by reason."),
    "refused_cap": ("puts_refused", {"reason": "cap"},
                    "Puts refused, by reason."),
    "refused_frozen": ("puts_refused", {"reason": "frozen"},
                       "Puts refused, by reason."),
    "dup_replaced": ("duplicate_puts", {"outcome": "replaced"},
                     "Puts to a handle already present, by outcome."),
    "dup_flushed": ("duplicate_puts", {"outcome": "flushed"},
                    "Puts to a handle already present, by outcome."),
    "compress_poor": ("puts_compress_poor", {},
                      "Pages stored raw: they compressed by less than 1/8."),
    "same_filled": ("puts_same_filled", {},
                    "Pages stored as a repeated 8-byte pattern."),
    "dedup_hits": ("puts_dedup_hits", {},
                   "Pages that shared data already stored (dedup)."),
    "gets": ("gets", {}, "Get calls."),
    "gets_found": ("gets_found", {}, "Gets that returned a page."),
    "flushes": ("page_flushes", {}, "flush_page calls."),
    "flushes_found": ("page_flushes_found", {},
                      "flush_page calls that removed a page."),
    "object_flushes": ("object_flushes", {}, "flush_object calls."),
    "object_flushes_found": ("object_flushes_found", {},
                             "flush_object calls that removed pages."),
    "object_flush_pages": ("object_flush_pages", {},
                           "Pages removed by flush_object."),
}

# PageCounts field -> (family suffix, help); evictions is a counter
PAGE_METRICS: dict[str, tuple[str, str]] = {
    "pages": ("pages", "Pages stored."),
    "bytes": ("accounted_bytes",
              "Accounted bytes: payload plus per-page metadata."),
    "raw_pages": ("raw_pages", "Pages stored uncompressed."),
    "compressed_pages": ("compressed_pages", "Pages stored compressed."),
    "compressed_bytes": ("compressed_bytes",
                         "Payload bytes of the compressed pages."),
    "same_filled_pages": ("same_filled_pages",
                          "Pages stored as a repeated 8-byte pattern."),
    "zero_pages": ("zero_pages", "Same-filled pages that are all zero."),
    "evictions": ("evictions", "Pages evicted."),
}


class _Families:
    """Metric families by name, each created on its first sample."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def add(self, name: str, help_text: str, labels: Labels,
            value: float, counter: bool = False) -> None:
        family = self.families.get(name)
        if family is None:
            kind = CounterMetricFamily if counter else GaugeMetricFamily
            family = kind(name, help_text, labels=list(labels))
            self.families[name] = family
        assert isinstance(family, (CounterMetricFamily, GaugeMetricFamily))
        family.add_metric(list(labels.values()), value)

    def gauge(self, name: str, help_text: str, labels: Labels,
              value: float) -> None:
        self.add(name, help_text, labels, value)

    def counter(self, name: str, help_text: str, labels: Labels,
                value: float) -> None:
        self.add(name, help_text, labels, value, counter=True)

    def ops(self, prefix: str, labels: Labels, ops: OpCounts) -> None:
        for field, (suffix, extra, help_text) in OP_METRICS.items():
            self.counter(f"{prefix}_{suffix}", help_text,
                         {**labels, **extra}, getattr(ops, field))

    def pages(self, prefix: str, labels: Labels,
              content: PageCounts) -> None:
        for field, (suffix, help_text) in PAGE_METRICS.items():
            value = getattr(content, field)
            if field == "evictions":
                self.counter(f"{prefix}_{suffix}", help_text, labels, value)
            else:
                self.gauge(f"{prefix}_{suffix}", help_text, labels, value)


def _host(out: _Families, host: HostStats) -> None:
    for name, help_text, value in (
            ("capacity_bytes", "Bytes the host may hold.", host.capacity),
            ("used_bytes", "Accounted bytes held now.", host.used),
            ("peak_used_bytes", "Most bytes held at once.", host.used_peak),
            ("freeable_bytes", "Bytes eviction could free now.",
             host.freeable),
            ("clients", "Live clients.", host.clients),
            ("pools", "Live pools (a shared pool once).", host.pools),
            ("shared_pools", "Live shared pools.", host.shared_pools),
            ("dedup_saved_bytes", "Payload bytes not stored twice.",
             host.dedup_saved_bytes),
            ("compression_ratio", "Page bytes stored over payload bytes.",
             host.compression_ratio)):
        out.gauge(f"tmem_{name}", help_text, {}, value)
    out.counter("tmem_dedup_collisions", "Payloads kept privately: another "
                "payload had their hash.", {}, host.dedup_collisions)
    out.gauge("tmem_info", "Host settings (value is always 1).",
              {"compress": host.compress,
               "dedup": "on" if host.dedup else "off"}, 1)
    for kind, content, ops in (
            ("ephemeral", host.ephemeral_content, host.ephemeral_ops),
            ("persistent", host.persistent_content, host.persistent_ops)):
        out.pages("tmem", {"kind": kind}, content)
        out.ops("tmem", {"kind": kind}, ops)


def _client(out: _Families, client: ClientStats) -> None:
    labels = {"client_id": str(client.client_id), "client": client.name}
    prefix = "tmem_client"
    out.gauge(f"{prefix}_info", "Client settings (value is always 1).",
              {**labels, "compress": client.compress,
               "dedup_group": client.dedup_group or ""}, 1)
    out.gauge(f"{prefix}_weight", "Share of ephemeral memory (relative).",
              labels, client.weight)
    if client.cap is not None:
        out.gauge(f"{prefix}_cap_bytes", "Most bytes the client may hold.",
                  labels, client.cap)
    out.gauge(f"{prefix}_frozen", "1 while the client's new puts are "
              "refused.", labels, int(client.frozen))
    out.gauge(f"{prefix}_connected", "0 while a daemon session waits to "
              "be resumed.", labels, int(client.connected))
    out.gauge(f"{prefix}_pools", "Live pools of the client.", labels,
              client.pools)
    out.gauge(f"{prefix}_peak_bytes", "Most bytes billed at once.", labels,
              client.bytes_peak)
    out.counter(f"{prefix}_evictions", "Ephemeral pages evicted.", labels,
                client.evictions)
    for kind, pages, nbytes, ops in (
            ("ephemeral", client.ephemeral_pages, client.ephemeral_bytes,
             client.ephemeral_ops),
            ("persistent", client.persistent_pages,
             client.persistent_bytes, client.persistent_ops)):
        by_kind = {**labels, "kind": kind}
        out.gauge(f"{prefix}_pages", "Pages billed to the client.", by_kind,
                  pages)
        out.gauge(f"{prefix}_accounted_bytes", "Accounted bytes billed to "
                  "the client.", by_kind, nbytes)
        out.ops(prefix, by_kind, ops)


def _pool(out: _Families, pool: PoolStats, name: str) -> None:
    labels = {"client_id": str(pool.client_id), "client": name,
              "pool_id": str(pool.pool_id),
              "kind": "persistent" if pool.persistent else "ephemeral",
              "shared": "true" if pool.shared else "false",
              "uuid": pool.uuid or ""}
    prefix = "tmem_pool"
    out.gauge(f"{prefix}_objects", "Objects holding pages.", labels,
              pool.objects)
    out.gauge(f"{prefix}_peak_pages", "Most pages held at once.", labels,
              pool.pages_peak)
    out.gauge(f"{prefix}_sharers", "Clients using the pool.", labels,
              pool.sharers)
    out.pages(prefix, labels, pool.content)
    out.ops(prefix, labels, pool.ops)


def metric_families(snap: Snapshot) -> list[Metric]:
    """Every series of one snapshot, `tmem_up` included."""
    out = _Families()
    out.gauge("tmem_up", "1 if the daemon answered this scrape.", {}, 1)
    _host(out, snap.host)
    names = {c.client_id: c.name for c in snap.clients}
    for client in snap.clients:
        _client(out, client)
    for pool in snap.pools:
        _pool(out, pool, names.get(pool.client_id, ""))
    return list(out.families.values())


DAEMON_METRICS: dict[str, tuple[str, Labels, str]] = {
    "accepted": ("connections", {}, "Connections taken in."),
    "refused_busy": ("connections_refused", {"reason": "busy"},
                     "Connections refused, by reason."),
    "refused_hello": ("connections_refused", {"reason": "hello"},
                      "Connections refused, by reason."),
    "hello_timeouts": ("connections_refused", {"reason": "hello_timeout"},
                       "Connections refused, by reason."),
    "protocol_errors": ("protocol_errors", {},
                        "Connections closed: bytes that cannot be framed."),
    "internal_errors": ("internal_errors", {},
                        "Requests the daemon failed on (ServerError)."),
}
"""ConnectionCounts field -> (family suffix, labels, help)."""


def daemon_families(counts: Mapping[str, int]) -> list[Metric]:
    """The daemon's own counters as `tmem_daemon_*_total` families."""
    out = _Families()
    for field, (suffix, labels, help_text) in DAEMON_METRICS.items():
        out.counter(f"tmem_daemon_{suffix}", help_text, labels,
                    counts[field])
    return list(out.families.values())


class SnapshotCollector(Collector):
    """Takes one snapshot per scrape and reports it.

    Args:
        source: returns a snapshot or raises ConnectionLost.
        daemon: returns the daemon's own counters, if any.
    """

    def __init__(self, source: Callable[[], Snapshot],
                 daemon: Callable[[], Mapping[str, int]] | None = None
                 ) -> None:
        self.source = source
        self.daemon = daemon

    def describe(self) -> list[Metric]:
        # nothing up front: describing would cost a snapshot at register
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self.source()
        except ConnectionLost:
            down = GaugeMetricFamily(
                "tmem_up", "1 if the daemon answered this scrape.", value=0)
            yield down
            return
        yield from metric_families(snap)
        if self.daemon is not None:
            yield from daemon_families(self.daemon())


@dataclass
class MetricsServer:
    """A `/metrics` endpoint running in a daemon thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (port 0 picks a free one)."""
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving and wait for the thread to end."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_metrics(source: Callable[[], Snapshot], address: str,
                  daemon: Callable[[], Mapping[str, int]] | None = None
                  ) -> MetricsServer:
    """Serve `/metrics` for `source` on `address` in a background thread.

    Args:
        source: returns a snapshot or raises ConnectionLost (for the
            daemon itself: its host's `snapshot`).
        address: "HOST:PORT", e.g. "127.0.0.1:9100"; port 0 picks one.
        daemon: the daemon's ConnectionCounts as a dict, if it has them.

    Raises:
        InvalidArgument: the address is not HOST:PORT.
        OSError: the address cannot be bound.
    """
    host, port = parse_host_port(address, "metrics")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source, daemon))
    server, thread = start_http_server(port, host, registry=registry)
    return MetricsServer(server, thread)
