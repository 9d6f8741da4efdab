"""The daemon's kernel swap device: `tmem swap on/off/status`.

The daemon serves one swap image from a persistent pool of its own client
"kernel-swap" (so its pages show in `tmem top` like anyone's), in a FUSE
thread of the daemon process; loop device, mkswap and swapon are
swapdev's.  See swapdev/__init__.py for the chain and its failure modes.

Rules:
- Only an admin may turn swap on or off; both run in a worker thread (they
  start processes and wait on the kernel), so other clients keep being
  served meanwhile.
- `on` refuses when the image, full and uncompressed, could not fit in the
  daemon's capacity: refused writes would reach the kernel as I/O errors.
- While the device is on, the daemon refuses to stop (an exit guard): the
  kernel has no other copy of the pages it swapped here.
- Memory is locked (mlockall) from the first `on`: the process serving
  swap must never be swapped to itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from tmem.engine.client import Client
from tmem.engine.errors import (
    Busy,
    InvalidArgument,
    LimitExceeded,
    NoSuchPool,
)
from tmem.engine.handles import format_size, parse_size
from tmem.engine.host import Host
from tmem.swapdev import (
    DEFAULT_MOUNTPOINT,
    SwapDevice,
    SwapError,
    dead,
    lock_memory,
    missing_support,
    off,
    on,
    reap,
    status,
    stop_refusal,
    unlock_memory,
)
from tmem.swapdev.standalone import full_image_capacity

log = logging.getLogger("tmem.daemon")
CLIENT_NAME = "kernel-swap"


class SwapControl:
    """At most one swap device, served from the daemon's host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.device: SwapDevice | None = None
        self._client: Client | None = None
        self._changing = False

    def exit_refusal(self) -> str | None:
        """Why the daemon must not stop now (its exit guard), or None."""
        if self.device is None:
            return None
        return stop_refusal(self.device.mountpoint)

    async def turn_on(self, size: int | str, priority: int | None,
                      mountpoint: str | None) -> dict[str, Any]:
        nbytes = parse_size(size, "swap size")
        self._check_can_start(nbytes)
        where = _check_mountpoint(mountpoint)
        client = self.host.client(CLIENT_NAME)
        self._changing = True
        try:
            pool = client.new_pool(persistent=True)
            lock_memory()
            device = await asyncio.to_thread(on, nbytes, priority, where,
                                             pool=pool)
        except BaseException:
            client.close()
            unlock_memory()
            raise
        finally:
            self._changing = False
        self.device, self._client = device, client
        log.info("swap on: %s", device.describe())
        return {"device": device.describe(), "loop": device.loop,
                "mountpoint": device.mountpoint}

    def _check_can_start(self, nbytes: int) -> None:
        if self.device is not None or self._changing:
            raise Busy("swap is already on (or changing): run `tmem swap "
                       "off` first")
        missing = missing_support()
        if missing:
            raise SwapError(f"cannot serve swap here: {'; '.join(missing)}")
        needed = full_image_capacity(nbytes)
        if needed > self.host.capacity:
            raise LimitExceeded(
                f"a {format_size(nbytes)} swap image may need "
                f"{format_size(needed)} of pool but this daemon lends "
                f"{format_size(self.host.capacity)}: use a smaller --size "
                "or serve with a larger --capacity")

    async def turn_off(self) -> dict[str, Any]:
        device = self.device
        if self._changing:
            raise Busy("swap is changing: try again when it is done")
        if device is None:
            steps = await asyncio.to_thread(reap)
            if not steps:
                raise NoSuchPool("no tmem swap device is on")
            log.info("swap off, dead devices: %s", "; ".join(steps))
            return {"steps": steps}
        self._changing = True
        try:
            steps = await asyncio.to_thread(off, device.mountpoint,
                                            server=device.server)
        finally:
            self._changing = False
        if self._client is not None:
            self._client.close()
        self.device = self._client = None
        unlock_memory()
        log.info("swap off: %s", "; ".join(steps))
        return {"steps": steps}

    def report(self) -> dict[str, Any]:
        if self.device is None:
            gone = dead()
            raise NoSuchPool("no tmem swap device is on" + (
                f"; a dead one at {', '.join(gone)} still holds swap: "
                "`tmem swap off` takes it down" if gone else ""))
        now = status(self.device.mountpoint)
        assert self._client is not None
        stats = self._client.stats()
        return {"device": now.describe(),
                "pages": stats.persistent_pages,
                "bytes": stats.persistent_bytes,
                "image": vars(now.image)}


def _check_mountpoint(mountpoint: str | None) -> str:
    if mountpoint is None:
        return DEFAULT_MOUNTPOINT
    if not isinstance(mountpoint, str) or not os.path.isabs(mountpoint):
        raise InvalidArgument(f"mount point {mountpoint!r} must be an "
                              "absolute path")
    return os.path.normpath(mountpoint)
