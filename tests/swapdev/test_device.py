"""The kernel swaps a memory-limited workload through the tmem pool.

Every test tears down what it made (swapoff, loop device, mount, cgroup)
in a finalizer, whether it passed or not.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tmem
from tmem import swapdev
from tmem.engine.errors import SwapError
from tmem.experiments.swapload import run_workload
from tmem.swapdev.system import is_mounted, loops_backed_by, swap_areas

pytestmark = [pytest.mark.needs_swap, pytest.mark.needs_memcg]

MIB = 600
LIMIT = 200 << 20
MUST_SWAP = (MIB << 20) - LIMIT
"""Bytes each pass over the workload must bring back from swap, at least."""


@pytest.fixture
def device(tmp_path: Path) -> Iterator[swapdev.SwapDevice]:
    """A 1 GiB tmem swap device from a standalone server process."""
    mountpoint = str(tmp_path / "mnt")
    device = None
    try:
        device = swapdev.on("1GiB", 32767, mountpoint)
        yield device
    finally:
        swapdev.off(mountpoint,
                    server=None if device is None else device.server)


def _wait_for_discards(mountpoint: str, timeout: float = 30.0
                       ) -> swapdev.SwapStatus:
    deadline = time.monotonic() + timeout
    status = swapdev.status(mountpoint)
    while status.image.pages_stored > 16 and time.monotonic() < deadline:
        time.sleep(0.25)
        status = swapdev.status(mountpoint)
    return status


def test_workload_swaps_through_the_pool_and_discards_empty_it(
        device: swapdev.SwapDevice) -> None:
    seen: dict[str, swapdev.SwapStatus] = {}

    def sample(phase: str) -> None:
        seen[phase] = swapdev.status(device.mountpoint)

    result = run_workload(MIB, LIMIT, sample, timeout=240)

    # every page came back intact, twice
    assert result.ok, result
    # the pool took the swap-outs and served the swap-ins
    filled = seen["filled"].image
    assert filled.write_bytes >= 0.8 * MUST_SWAP
    assert filled.pages_stored * tmem.PAGE_SIZE >= 0.8 * MUST_SWAP
    assert filled.compression_ratio > 1.1  # half the pages are real data
    done = seen["done"].image
    assert done.read_bytes >= 2 * 0.8 * MUST_SWAP
    assert done.refused_writes == 0
    # the workload is gone: discards flushed its pages
    after = _wait_for_discards(device.mountpoint).image
    assert after.discarded_pages >= 0.8 * MUST_SWAP / tmem.PAGE_SIZE
    assert after.pages_stored <= 16, after


def test_status_reports_the_device(device: swapdev.SwapDevice) -> None:
    status = swapdev.status(device.mountpoint)
    assert status.loop == device.loop
    assert status.priority == 32767
    assert status.server_pid == device.server_pid != os.getpid()
    assert status.image.size == 1 << 30
    assert len(status.describe()) == 3


def test_stopping_is_refused_while_swap_is_on(
        device: swapdev.SwapDevice) -> None:
    reason = swapdev.stop_refusal(device.mountpoint)
    assert reason is not None
    assert device.loop in reason and "pages are lost" in reason


def test_off_removes_everything_and_can_be_repeated(
        tmp_path: Path) -> None:
    # off() by mount point alone, as from another process: it waits for
    # the server to exit by its pid
    mountpoint = str(tmp_path / "mnt")
    device = None
    try:
        device = swapdev.on("64MiB", None, mountpoint)
        assert any(a.name == device.loop for a in swap_areas())
        steps = swapdev.off(mountpoint)
        assert [s.split()[0] for s in steps] == [
            "swapoff", "losetup", "umount", "rmdir"]
        assert not any(a.name == device.loop for a in swap_areas())
        assert loops_backed_by(device.image) == []
        assert not is_mounted(mountpoint)
        assert _exited(device.server_pid)
        assert swapdev.off(mountpoint) == []
        assert swapdev.stop_refusal(mountpoint) is None
    finally:
        _off(mountpoint, device)


def test_off_cleans_up_after_the_server_died(tmp_path: Path) -> None:
    mountpoint = str(tmp_path / "mnt")
    device = None
    try:
        device = swapdev.on("64MiB", None, mountpoint)
        os.kill(device.server_pid, signal.SIGKILL)
        steps = swapdev.off(mountpoint)
        assert [s.split()[0] for s in steps] == [
            "swapoff", "losetup", "umount", "rmdir"]
        assert loops_backed_by(device.image) == []
        assert not is_mounted(mountpoint)
    finally:
        _off(mountpoint, device)


def test_on_first_takes_down_a_device_whose_server_died(
        tmp_path: Path) -> None:
    dead, fresh = str(tmp_path / "dead"), str(tmp_path / "fresh")
    first = second = None
    try:
        first = swapdev.on("64MiB", 32767, dead)
        assert first.loop is not None and first.server is not None
        os.kill(first.server_pid, signal.SIGKILL)
        first.server.stop(5)  # reaps the killed child

        second = swapdev.on("64MiB", 32767, fresh)

        assert loops_backed_by(first.image) == []
        assert not is_mounted(dead)
        names = [area.name for area in swap_areas()]
        assert first.loop not in names or first.loop == second.loop
        assert names.count(second.loop) == 1
        assert swapdev.reap() == []  # nothing left to take down
    finally:
        _off(dead, first)
        _off(fresh, second)


def test_on_refuses_a_mountpoint_in_use(
        device: swapdev.SwapDevice) -> None:
    with pytest.raises(SwapError, match="already mounted"):
        swapdev.on("64MiB", None, device.mountpoint)


def test_on_refuses_sizes_that_are_not_whole_pages(tmp_path: Path) -> None:
    with pytest.raises(SwapError, match="whole 4096-byte pages"):
        swapdev.on(5 << 20 | 100, None, str(tmp_path / "mnt"))


def test_on_reports_a_mount_point_it_cannot_make(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SwapError, match="cannot make mount point"):
        swapdev.on("64MiB", None, str(tmp_path / "file" / "mnt"))


def test_status_without_a_device_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SwapError, match="no tmem swap image"):
        swapdev.status(str(tmp_path))


def test_a_pool_in_this_process_serves_swap_as_the_daemon_will(
        tmp_path: Path) -> None:
    host = tmem.Host(capacity="512MiB", compress="lz4")
    pool = host.client("swap").new_pool(persistent=True)
    mountpoint = str(tmp_path / "mnt")
    device = None
    try:
        device = swapdev.on("256MiB", 32767, mountpoint, pool=pool)
        assert device.server_pid == os.getpid()
        # the workload is another process; only the server lives here
        result = run_workload(160, 64 << 20, timeout=120)
        assert result.ok, result
        assert pool.stats().ops.puts_stored > 0
        assert pool.stats().ops.gets_found > 0
    finally:
        swapdev.off(mountpoint,
                    server=None if device is None else device.server)
    assert pool.stats().content.pages == 0
    host.check()


def _off(mountpoint: str, device: swapdev.SwapDevice | None) -> None:
    """Tear down, and reap the server process we started."""
    swapdev.off(mountpoint, server=None if device is None else device.server)


def _exited(pid: int) -> bool:
    """Gone, or a zombie its parent (this test) has yet to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_on_never_mounts_over_a_directory_that_holds_files(
        tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SwapError, match="is not empty"):
        swapdev.on("64MiB", None, str(tmp_path))
    assert not is_mounted(str(tmp_path))
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("priority", [-5, 32768, True])
def test_on_refuses_a_priority_swapon_would_not_keep(
        tmp_path: Path, priority: int) -> None:
    with pytest.raises(SwapError, match=r"priority .* in 0\.\.32767"):
        swapdev.on("64MiB", priority, str(tmp_path / "mnt"))
    assert not (tmp_path / "mnt").exists()
