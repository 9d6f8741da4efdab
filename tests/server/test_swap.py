"""The daemon serves kernel swap: a memory-limited workload swaps through
its pool, the daemon refuses to stop meanwhile, and discards empty it.

Torn down (swapoff, loop detach, unmount, cgroup) whether it passes or not.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import tmem
from tmem import swapdev
from tmem.experiments.swapload import run_workload
from tmem.swapdev.system import is_mounted
from tmem.testing import call_in_loop, daemon_in_thread

pytestmark = [pytest.mark.needs_swap, pytest.mark.needs_memcg]

MIB, LIMIT = 400, 150 << 20
MUST_SWAP = (MIB << 20) - LIMIT


def test_daemon_swap_serves_a_workload_and_empties_after_it(
        sockdir: Path) -> None:
    mountpoint = str(sockdir / "swap")
    with daemon_in_thread(sockdir / "s.sock", capacity="2GiB") as daemon, \
            tmem.connect_control(f"unix:{daemon.config.socket}") as ctl:
        try:
            ctl.swap_on("1GiB", 32767, mountpoint)
            assert daemon.swap.exit_refusal() is not None
            with pytest.raises(tmem.Busy, match="already on"):
                ctl.swap_on("64MiB", None, mountpoint)
            seen: dict[str, dict[str, object]] = {}
            result = run_workload(
                MIB, LIMIT, lambda phase: seen.__setitem__(
                    phase, ctl.swap_status()), timeout=240)
            assert result.ok, result
            filled = seen["filled"]["image"]
            assert isinstance(filled, dict)
            assert filled["write_bytes"] >= 0.8 * MUST_SWAP
            done = seen["done"]["image"]
            assert isinstance(done, dict)
            assert done["read_bytes"] >= 2 * 0.8 * MUST_SWAP
            assert done["refused_writes"] == 0
            snap = ctl.snapshot()
            assert any(c.name == "kernel-swap" for c in snap.clients)
            _wait_until_empty(ctl)
        finally:
            if daemon.swap.device is not None:
                ctl.swap_off()
        assert daemon.swap.exit_refusal() is None
        assert call_in_loop(daemon, lambda: daemon.host.stats().used) == 0


def _wait_until_empty(ctl: tmem.client.RemoteControl) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pages = ctl.swap_status()["pages"]
        if isinstance(pages, int) and pages <= 16:
            return
        time.sleep(0.25)
    raise AssertionError("discards did not empty the pool")


def test_swap_larger_than_the_pool_is_refused(sockdir: Path) -> None:
    with daemon_in_thread(sockdir / "t.sock", capacity="64MiB") as daemon, \
            tmem.connect_control(f"unix:{daemon.config.socket}") as ctl:
        with pytest.raises(tmem.LimitExceeded, match="larger --capacity"):
            ctl.swap_on("1GiB", None, str(sockdir / "swap"))
        with pytest.raises(tmem.NoSuchPool, match="no tmem swap"):
            ctl.swap_off()


def test_swap_needs_an_absolute_mountpoint(sockdir: Path) -> None:
    with daemon_in_thread(sockdir / "a.sock", capacity="256MiB") as daemon, \
            tmem.connect_control(f"unix:{daemon.config.socket}") as ctl:
        for where in ("", "relative/dir"):
            with pytest.raises(tmem.InvalidArgument, match="absolute"):
                ctl._wire.call_waiting(tmem.client.calls.control(
                    tmem.protocol.frames.Op.SWAP_ON, size="64MiB",
                    priority=None, mountpoint=where))
        assert daemon.swap.device is None


def test_swap_off_takes_down_a_device_whose_server_died(
        sockdir: Path) -> None:
    mountpoint = str(sockdir / "dead")
    device = swapdev.on("64MiB", None, mountpoint)
    try:
        assert device.server is not None
        os.kill(device.server_pid, signal.SIGKILL)
        device.server.stop(5)
        with daemon_in_thread(sockdir / "d.sock") as daemon, \
                tmem.connect_control(f"unix:{daemon.config.socket}") as ctl:
            with pytest.raises(tmem.NoSuchPool, match="dead one at"):
                ctl.swap_status()
            steps = ctl.swap_off()["steps"]
            assert isinstance(steps, list) and steps[0].startswith("swapoff")
            with pytest.raises(tmem.NoSuchPool, match=r"is on$"):
                ctl.swap_status()
        assert not is_mounted(mountpoint)
    finally:
        swapdev.off(mountpoint)
