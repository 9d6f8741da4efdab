"""Hosts for the monitor's tests: one moved step by step on a fake clock,
one under live traffic from threads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tmem
from tmem.monitor.testing import EmbeddedControl, FakeClock, Traffic

NAMES = ("web", "database", "batch")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stepped(pages: list[bytes], clock: FakeClock) -> Traffic:
    """Traffic that moves only when the test calls `step()` (fake clock)."""
    host = tmem.Host(capacity="2MiB", clock=clock)
    return Traffic(host, NAMES, pages[:128], batch=16, span=128)


@pytest.fixture
def control(stepped: Traffic) -> Iterator[EmbeddedControl]:
    """An admin control over the stepped host, after one round."""
    stepped.step()
    host = stepped.tenants[0].client.host
    yield EmbeddedControl(host)
    host.check()


@pytest.fixture
def live(pages: list[bytes]) -> Iterator[EmbeddedControl]:
    """An admin control over a host that threads keep busy.

    The threads pause 50 ms between rounds: Textual's pilot waits after
    each key until the process looks idle, so busier threads would only
    make every key press take longer.
    """
    host = tmem.Host(capacity="2MiB")
    traffic = Traffic(host, NAMES, pages[:128], batch=8, span=128,
                      pause=0.05)
    traffic.step()
    with traffic:
        yield EmbeddedControl(host)
    host.check()
