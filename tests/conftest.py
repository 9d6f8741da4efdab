"""Fixtures shared by every test: real pages, a checked host, and hosts
under traffic with a control over them (monitor and metrics tests).

Marks for tests that need the real machine (skipped with the reason):
- `needs_swap`: root, /dev/fuse, libfuse3, loop devices and the
  util-linux tools (reasons from `tmem.swapdev.missing_support()`);
- `needs_memcg`: root and a cgroup hierarchy with the memory controller,
  to make a workload swap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tmem
from tmem import corpus
from tmem.monitor.testing import EmbeddedControl, Traffic
from tmem.server.daemon import Daemon
from tmem.testing import FakeClock, daemon_in_thread


@pytest.fixture(scope="session")
def pages() -> list[bytes]:
    """512 distinct real pages (text and binary files of this machine)."""
    return corpus.pages(512, distinct=True)


@pytest.fixture
def host() -> Iterator[tmem.Host]:
    """A roomy host whose accounting is verified after the test."""
    h = tmem.Host(capacity="64MiB", compress="lz4")
    yield h
    h.check()


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


# -- a daemon in a background thread, on a short socket path ---------------

@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tmem-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(sockdir: Path) -> Iterator[Daemon]:
    with daemon_in_thread(sockdir / "tmem.sock", capacity=64 << 20,
                          grace=30.0) as d:
        yield d


@pytest.fixture
def address(daemon: Daemon) -> str:
    return f"unix:{daemon.config.socket}"


# -- marks for the real machine ----------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_swap: needs root, FUSE, libfuse3 and loop devices")
    config.addinivalue_line(
        "markers", "needs_memcg: needs root and the memory cgroup controller")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_swap"):
        from tmem.swapdev import missing_support

        missing = missing_support()
        if missing:
            pytest.skip("tmem swap cannot run here: " + "; ".join(missing))
    if item.get_closest_marker("needs_memcg"):
        from tmem.experiments.memcg import find_hierarchy

        if os.geteuid() != 0:
            pytest.skip("not root: memory cgroups need root")
        if find_hierarchy() is None:
            pytest.skip("no cgroup hierarchy offers the memory controller")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The machine facts the swap tests depend on, to read in CI logs."""
    from tmem.experiments.memcg import find_hierarchy
    from tmem.experiments.swapload import swap_space

    with open("/proc/sys/vm/swappiness") as f:
        swappiness = f.read().strip()
    hierarchy = find_hierarchy()
    memcg = ("none" if hierarchy is None
             else f"v{hierarchy.version} at {hierarchy.root}")
    return [f"machine: kernel {os.uname().release}, uid {os.geteuid()}, "
            f"vm.swappiness {swappiness}, memory cgroup {memcg}, "
            f"{swap_space()}"]
