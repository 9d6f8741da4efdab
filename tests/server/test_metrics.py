"""`/metrics`: one snapshot per scrape, parsed back with the client
library's own parser and checked against the snapshot."""

from __future__ import annotations

import dataclasses
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import tmem
from tmem.monitor.testing import EmbeddedControl
from tmem.server import metrics
from tmem.server.daemon import ConnectionCounts

Key = tuple[str, tuple[tuple[str, str], ...]]


def samples(text: str) -> dict[Key, float]:
    """Every sample by (name, sorted labels)."""
    found: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[_key(sample)] = sample.value
    return found


def _key(sample: Sample) -> Key:
    return sample.name, tuple(sorted(sample.labels.items()))


def key(name: str, **labels: str) -> Key:
    return name, tuple(sorted(labels.items()))


@pytest.fixture
def server(control: EmbeddedControl) -> Iterator[metrics.MetricsServer]:
    served = metrics.serve_metrics(control.snapshot, "127.0.0.1:0")
    yield served
    served.close()


def scrape(server: metrics.MetricsServer) -> str:
    host, port = server.address
    url = f"http://{host}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode()


def test_scrape_over_http_matches_the_snapshot(
        control: EmbeddedControl, server: metrics.MetricsServer) -> None:
    found = samples(scrape(server))
    snap = control.snapshot()  # fake clock, no traffic: the same one
    host = snap.host
    assert found[key("tmem_up")] == 1
    assert found[key("tmem_capacity_bytes")] == host.capacity
    assert found[key("tmem_used_bytes")] == host.used
    assert found[key("tmem_freeable_bytes")] == host.freeable
    assert found[key("tmem_pages", kind="persistent")] == \
        host.persistent_content.pages
    assert found[key("tmem_puts_total", kind="ephemeral")] == \
        host.ephemeral_ops.puts
    assert found[key("tmem_compression_ratio")] == \
        pytest.approx(host.compression_ratio)

    web = next(c for c in snap.clients if c.name == "web")
    who = {"client_id": str(web.client_id), "client": "web"}
    assert found[key("tmem_client_weight", **who)] == web.weight
    assert found[key("tmem_client_pages", kind="ephemeral", **who)] == \
        web.ephemeral_pages
    assert found[key("tmem_client_gets_found_total", kind="persistent",
                     **who)] == web.persistent_ops.gets_found
    assert key("tmem_client_cap_bytes", **who) not in found  # no cap

    pool = next(p for p in snap.pools
                if p.client_id == web.client_id and p.persistent)
    where = {**who, "pool_id": str(pool.pool_id), "kind": "persistent",
             "shared": "false", "uuid": ""}
    assert found[key("tmem_pool_pages", **where)] == pool.content.pages
    assert found[key("tmem_pool_compressed_bytes", **where)] == \
        pool.content.compressed_bytes
    assert found[key("tmem_pool_puts_stored_total", **where)] == \
        pool.ops.puts_stored


def test_every_engine_counter_is_exported(control: EmbeddedControl) -> None:
    assert set(metrics.OP_METRICS) == {
        f.name for f in dataclasses.fields(tmem.OpCounts)}
    assert set(metrics.PAGE_METRICS) == {
        f.name for f in dataclasses.fields(tmem.PageCounts)}


def test_refusals_are_one_family_labelled_by_reason(
        control: EmbeddedControl) -> None:
    host = control.host
    host.freeze("web")
    web = host.find_client("web")
    web.pools()[0].put(9, 9, b"\1" * 4096)
    families = {f.name: f for f in metrics.metric_families(
        control.snapshot())}
    refused = families["tmem_client_puts_refused"]
    assert refused.type == "counter"
    by_reason = {(s.labels["client"], s.labels["kind"],
                  s.labels["reason"]): s.value for s in refused.samples}
    assert by_reason[("web", "ephemeral", "frozen")] == 1
    assert by_reason[("web", "ephemeral", "full")] == 0
    assert by_reason[("database", "ephemeral", "frozen")] == 0
    frozen = families["tmem_client_frozen"]
    assert {s.labels["client"]: s.value for s in frozen.samples} == {
        "web": 1, "database": 0, "batch": 0}


def test_shared_pools_carry_their_uuid_and_sharers(
        control: EmbeddedControl) -> None:
    shared = uuid.uuid4()
    for name in ("web", "batch"):
        control.host.authorize(name, shared)
        control.host.find_client(name).new_pool(shared=True, uuid=shared)
    found = samples(metrics_text(control))
    sharers = {k: v for k, v in found.items()
               if k[0] == "tmem_pool_sharers" and ("shared", "true") in k[1]}
    assert len(sharers) == 2
    assert set(sharers.values()) == {2}
    assert all(("uuid", str(shared)) in k[1] for k in sharers)


def metrics_text(control: EmbeddedControl) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(metrics.SnapshotCollector(control.snapshot))
    return generate_latest(registry).decode()


def test_a_lost_daemon_scrapes_as_down_not_as_an_error(
        control: EmbeddedControl, server: metrics.MetricsServer) -> None:
    control.disconnect()
    assert samples(scrape(server)) == {key("tmem_up"): 0}
    control.reconnect()
    assert samples(scrape(server))[key("tmem_up")] == 1


def test_each_scrape_takes_exactly_one_snapshot(
        control: EmbeddedControl, server: metrics.MetricsServer) -> None:
    calls = control.calls
    scrape(server)
    scrape(server)
    assert control.calls == calls + 2


@pytest.mark.parametrize("address", ["9100", "host:", "host:http",
                                     "host:70000"])
def test_bad_metrics_addresses_are_refused(address: str) -> None:
    with pytest.raises(tmem.InvalidArgument,
                       match=f"metrics address {address!r} must be"):
        metrics.serve_metrics(lambda: tmem.Host().snapshot(), address)


def test_daemon_counters_are_families_labelled_by_reason() -> None:
    counts = dataclasses.asdict(ConnectionCounts(
        accepted=5, refused_busy=1, refused_hello=2, hello_timeouts=3,
        protocol_errors=4, internal_errors=6))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.SnapshotCollector(
        lambda: tmem.Host().snapshot(), lambda: counts))
    found = samples(generate_latest(registry).decode())
    assert found[key("tmem_daemon_connections_total")] == 5
    refused = "tmem_daemon_connections_refused_total"
    assert [found[key(refused, reason=r)]
            for r in ("busy", "hello", "hello_timeout")] == [1, 2, 3]
    assert found[key("tmem_daemon_protocol_errors_total")] == 4
    assert found[key("tmem_daemon_internal_errors_total")] == 6
    assert set(metrics.DAEMON_METRICS) == set(counts)


def test_daemon_serves_metrics_of_its_clients(tmp_path: object,
                                              pages: list[bytes]) -> None:
    import shutil
    import tempfile
    import urllib.request
    from pathlib import Path

    from prometheus_client.parser import text_string_to_metric_families

    from tmem.testing import daemon_in_thread

    folder = Path(tempfile.mkdtemp(prefix="tmem-"))
    try:
        with daemon_in_thread(folder / "m.sock",
                              metrics="127.0.0.1:0") as daemon, \
                tmem.connect(f"unix:{folder}/m.sock", name="scraped") as c:
            c.new_pool(persistent=True).put_many(
                [(1, i, p) for i, p in enumerate(pages[:30])])
            assert daemon._metrics is not None
            host, port = daemon._metrics.address
            text = urllib.request.urlopen(
                f"http://{host}:{port}/metrics", timeout=10).read()
        families = {f.name: f for f in text_string_to_metric_families(
            text.decode())}
        pages_family = families["tmem_client_pages"]
        values = {(s.labels["client"], s.labels["kind"]): s.value
                  for s in pages_family.samples}
        assert values[("scraped", "persistent")] == 30
        accepted = families["tmem_daemon_connections"].samples[0]
        assert accepted.value == 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
