"""Swap on, off and status: the whole lifecycle of one tmem swap device.

    on:  mount (serve the image) -> losetup -> mkswap -> swapon
    off: swapoff -> losetup -d -> unmount -> server ends -> rmdir

Rules:
- `on` serves the image from `pool` in a thread of this process when a
  pool is given (the daemon's way), else from a standalone server process
  with its own embedded Host (tests, benchmarks, no daemon).  A failed
  step tears down what the steps before it made.
- `on` mounts only on an empty or a new directory: mounting over one
  that holds files would hide them until `off`.
- `off` finds what exists from the machine itself (mounts, loop devices,
  /proc/swaps), not from memory of `on`, so it works after a crash or a
  partial failure, and again after it succeeded.  It refuses before
  touching anything when swapoff would not fit in memory.
- `status` reads the mount's stats file and /proc/swaps.
- `reap` takes down every tmem swap device whose server has died, and
  `on` reaps first: a dead device left in the swap list makes the kernel
  fail every swap-out it sends there, and a workload that could have
  swapped elsewhere is killed for want of memory instead.
- Everything runs with timeouts.  Blocking calls: a daemon's event loop
  should run them in a worker thread.

If the process serving the image dies while pages are swapped out, those
pages are lost: the kernel gets I/O errors, the processes owning them
are killed with SIGBUS, and nothing can bring the pages back.  Run `off`
before stopping the server, and never serve swap from a process that
may be killed casually.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from tmem.engine.api import PoolAPI
from tmem.engine.errors import SwapError
from tmem.engine.handles import PAGE_SIZE, format_size, parse_size
from tmem.swapdev import blockdev
from tmem.swapdev.fusefs import FS_TYPE, IMAGE_NAME, STATS_NAME, SwapServer
from tmem.swapdev.image import ImageStats
from tmem.swapdev.standalone import spawn
from tmem.swapdev.system import (
    DEFAULT_TIMEOUT,
    fuse_server_gone,
    is_mounted,
    loops_backed_by,
    missing_support,
    mount_points_of_type,
    run,
    swap_area,
)

log = logging.getLogger(__name__)

DEFAULT_MOUNTPOINT = "/run/tmem/swap"
MAX_PRIORITY = 32767
"""The highest priority swapon(8) takes."""
MIN_SIZE = 1 << 20
"""The smallest image on/off accept (mkswap wants at least 10 pages)."""
_UNMOUNT_TRIES = 20
"""Unmount attempts 0.25 s apart: a loop device lets go asynchronously."""


class Stoppable(Protocol):
    """What serves an image: a SwapServer thread or a ServerProcess."""

    def stop(self, timeout: float = ...) -> None: ...


@dataclass(frozen=True)
class SwapDevice:
    """What `on` made."""

    mountpoint: str
    image: str
    loop: str
    size: int
    priority: int | None
    server_pid: int
    server: Stoppable | None = field(default=None, compare=False,
                                     repr=False)
    """Pass it to `off` so it ends the server cleanly."""

    def describe(self) -> str:
        prio = "default" if self.priority is None else str(self.priority)
        return (f"swap on {self.loop}: {format_size(self.size)}, priority "
                f"{prio}, image {self.image} served by pid "
                f"{self.server_pid}")


@dataclass(frozen=True)
class SwapStatus:
    """A tmem swap device now."""

    mountpoint: str
    loop: str | None
    """The loop device, or None if none holds the image."""
    swap_used: int
    """Bytes /proc/swaps says the area holds (0 if not a swap area)."""
    priority: int | None
    server_pid: int
    image: ImageStats

    def describe(self) -> list[str]:
        s = self.image
        return [
            f"device {self.loop or '(no loop device)'}, priority "
            f"{self.priority}, server pid {self.server_pid}",
            f"pages stored {s.pages_stored:,} "
            f"({format_size(s.pages_stored * PAGE_SIZE)}), in swap "
            f"{format_size(self.swap_used)}, pool bytes "
            f"{format_size(s.stored_bytes)}, compression "
            f"{s.compression_ratio:.2f}x",
            f"reads {s.reads:,} ({format_size(s.read_bytes)}), writes "
            f"{s.writes:,} ({format_size(s.write_bytes)}), refused writes "
            f"{s.refused_writes:,}, discards {s.discards:,} "
            f"({s.discarded_pages:,} pages flushed)",
        ]


def on(size: int | str, priority: int | None = None,
       mountpoint: str = DEFAULT_MOUNTPOINT, *, pool: PoolAPI | None = None,
       capacity: int | str | None = None, compress: str = "lz4",
       timeout: float = DEFAULT_TIMEOUT) -> SwapDevice:
    """Serve a swap image of `size` bytes and swap on it.

    Args:
        size: the image's bytes ("1GiB" or an int), whole pages.
        priority: swapon priority, or None for the kernel's default.
        mountpoint: a directory to mount on (made if missing).
        pool: a persistent pool to serve from in this process; None
            starts a standalone server process instead.
        capacity, compress: the standalone server's Host (ignored with
            a pool).

    Raises:
        SwapError: the machine lacks support, the mount point is in use,
            or a step failed (what was made is torn down).
    """
    nbytes = _check_size(size)
    _check_priority(priority)
    missing = missing_support()
    if missing:
        raise SwapError("tmem swap cannot run here: " + "; ".join(missing))
    reap(timeout)
    mountpoint = os.path.abspath(mountpoint)
    if is_mounted(mountpoint):
        raise SwapError(f"{mountpoint!r} is already mounted: run off() "
                        "first")
    _check_empty(mountpoint)
    try:
        os.makedirs(mountpoint, exist_ok=True)
    except OSError as error:
        raise SwapError(f"cannot make mount point {mountpoint!r}: "
                        f"{error.strerror}") from None

    # serve, then attach; undo everything if a step fails
    try:
        server, pid = _start_server(pool, nbytes, mountpoint, capacity,
                                    compress, timeout)
    except SwapError:
        _remove_dir(mountpoint)
        raise
    image = os.path.join(mountpoint, IMAGE_NAME)
    try:
        loop = blockdev.attach(image, priority, timeout)
    except SwapError:
        _teardown_quietly(mountpoint, server, timeout)
        raise
    device = SwapDevice(mountpoint, image, loop, nbytes, priority, pid,
                        server)
    log.info("%s", device.describe())
    return device


def off(mountpoint: str = DEFAULT_MOUNTPOINT, *,
        server: Stoppable | None = None,
        timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Tear down the swap device at `mountpoint`; return the steps done.

    Safe to call after a partial failure and to repeat.

    Args:
        server: the SwapDevice's server, to end it cleanly; without it
            a standalone server is waited for by its pid.

    Raises:
        SwapError: swapoff would not fit in memory (nothing was done), or
            a step failed (the steps before it stay done).
    """
    mountpoint = os.path.abspath(mountpoint)
    pid = _server_pid(mountpoint)
    steps = blockdev.detach(os.path.join(mountpoint, IMAGE_NAME), timeout)
    if is_mounted(mountpoint):
        _unmount(mountpoint, timeout)
        steps.append(f"umount {mountpoint}")
    if server is not None:
        server.stop(timeout)
    elif pid is not None and pid != os.getpid():
        _wait_exit(pid, timeout)
    if _remove_dir(mountpoint):
        steps.append(f"rmdir {mountpoint}")
    for step in steps:
        log.info("swap off: %s", step)
    return steps


def dead() -> list[str]:
    """Mount points of tmem swap devices whose server has died."""
    return [m for m in mount_points_of_type(FS_TYPE)
            if fuse_server_gone(m)]


def reap(timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Take down every tmem swap device whose server died; return the
    steps done.

    The pages such a device held are gone already (their owners get
    SIGBUS when they touch them); reaping stops the kernel from sending
    it more.

    Raises:
        SwapError: a step failed (see `off`).
    """
    steps = []
    for mountpoint in dead():
        log.warning("tmem swap at %s lost its server; taking it down",
                    mountpoint)
        steps += off(mountpoint, timeout=timeout)
    return steps


def status(mountpoint: str = DEFAULT_MOUNTPOINT) -> SwapStatus:
    """The device at `mountpoint` now.

    Raises:
        SwapError: nothing is served there.
    """
    mountpoint = os.path.abspath(mountpoint)
    fields = _read_stats(mountpoint)
    if fields is None:
        raise SwapError(f"no tmem swap image is served at {mountpoint!r}")
    loops = loops_backed_by(os.path.join(mountpoint, IMAGE_NAME))
    loop = loops[0] if loops else None
    area = None if loop is None else swap_area(loop)
    pid = int(fields.pop("server_pid"))
    fields.pop("compression_ratio", None)
    return SwapStatus(
        mountpoint, loop, 0 if area is None else area.used,
        None if area is None else area.priority, pid, ImageStats(**fields))


def stop_refusal(mountpoint: str = DEFAULT_MOUNTPOINT) -> str | None:
    """Why the server at `mountpoint` must not stop now, or None.

    A loop device holding the image means the kernel may have pages
    there; stopping would lose them.  For the daemon's exit guards.
    """
    image = os.path.join(os.path.abspath(mountpoint), IMAGE_NAME)
    loops = loops_backed_by(image)
    if not loops:
        return None
    area = swap_area(loops[0])
    used = "" if area is None else f", {format_size(area.used)} in use"
    return (f"tmem swap is on at {loops[0]}{used}: run `tmem swap off` "
            "before stopping, or those pages are lost")


# -- helpers -----------------------------------------------------------------


def _check_size(size: int | str) -> int:
    nbytes = parse_size(size, "swap size")
    if nbytes < MIN_SIZE or nbytes % PAGE_SIZE:
        raise SwapError(f"swap size {size!r} must be whole {PAGE_SIZE}-byte"
                        f" pages and at least {format_size(MIN_SIZE)}")
    return nbytes


def _check_priority(priority: int | None) -> None:
    if priority is None:
        return
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not 0 <= priority <= MAX_PRIORITY:
        raise SwapError(f"swap priority {priority!r} must be an integer in "
                        f"0..{MAX_PRIORITY} (or none: the kernel's default)")


def _check_empty(mountpoint: str) -> None:
    """Refuse to mount over a directory that holds something."""
    try:
        inside = os.listdir(mountpoint)
    except (FileNotFoundError, NotADirectoryError):
        return  # to be made; making it says what is wrong
    except OSError as error:
        raise SwapError(f"mount point {mountpoint!r}: "
                        f"{error.strerror}") from None
    if inside:
        raise SwapError(f"mount point {mountpoint!r} is not empty: choose "
                        "an empty or a new directory")


def _start_server(pool: PoolAPI | None, size: int, mountpoint: str,
                  capacity: int | str | None, compress: str,
                  timeout: float) -> tuple[Stoppable, int]:
    if pool is not None:
        server = SwapServer(pool, size, mountpoint)
        server.start(timeout)
        return server, os.getpid()
    cap = None if capacity is None else parse_size(capacity, "capacity")
    process = spawn(mountpoint, size, cap, compress, timeout=timeout)
    return process, process.pid


def _teardown_quietly(mountpoint: str, server: Stoppable,
                      timeout: float) -> None:
    try:
        off(mountpoint, server=server, timeout=timeout)
    except SwapError as error:
        log.error("tearing down after a failed on(): %s", error)


def _read_stats(mountpoint: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(mountpoint, STATS_NAME)) as f:
            fields: dict[str, Any] = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return fields


def _server_pid(mountpoint: str) -> int | None:
    fields = _read_stats(mountpoint)
    return None if fields is None else int(fields["server_pid"])


def _unmount(mountpoint: str, timeout: float) -> None:
    """umount, retrying while the just-detached loop device lets go."""
    for attempt in range(_UNMOUNT_TRIES):
        try:
            run(["umount", mountpoint], timeout)
            return
        except SwapError:
            if attempt == _UNMOUNT_TRIES - 1:
                raise
            time.sleep(0.25)


def _remove_dir(mountpoint: str) -> bool:
    """Remove the mount point if it is an empty, unmounted directory."""
    if not os.path.isdir(mountpoint) or is_mounted(mountpoint):
        return False
    try:
        os.rmdir(mountpoint)
    except OSError as error:
        log.warning("left %s in place: %s", mountpoint, error.strerror)
        return False
    return True


def _wait_exit(pid: int, timeout: float) -> None:
    """Wait for a server process that is not our child to exit."""
    deadline = time.monotonic() + timeout
    while _running(pid):
        if time.monotonic() > deadline:
            raise SwapError(f"swap server pid {pid} still runs "
                            f"{timeout:g} s after its unmount")
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
