"""Real frontswap: the Linux kernel swaps into a tmem persistent pool.

Linux dropped its frontswap hooks in 6.5, so the pool is offered to the
kernel as an ordinary swap device:

    kernel swap -> loop device -> swap.img on a FUSE mount -> PoolAPI

- image.py: the file's logic: byte offsets to (oid, index) pages, reads,
  writes, punched holes (discards = flushes), counters.
- fusefs.py: `SwapServer`, the FUSE file system serving one image
  (direct_io, so every swap-out is a put and every swap-in a get).
- blockdev.py: losetup, mkswap, swapon and their undoing (root).
- device.py: `on`, `off`, `status`, `dead`, `reap`: the whole lifecycle.
- standalone.py: a server process with its own embedded Host, for when
  no tmem daemon serves the image.
- system.py: commands with timeouts, /proc parsers, `SwapError`, and
  `missing_support()`.

The daemon serves the image from its own process:

    device = swapdev.on("4GiB", priority=100, mountpoint=...,
                        pool=client.new_pool(persistent=True))
    swapdev.status(device.mountpoint)
    swapdev.stop_refusal(device.mountpoint)   # an exit guard: str | None
    swapdev.off(device.mountpoint, server=device.server)

If the serving process dies while holding swap, the kernel cannot recover
those pages: it has no other copy.  Swap-ins fail with I/O errors, the
processes that owned the pages die of SIGBUS, and swap-outs fail until
`off()` removes the device.  So the server never shares a process with a
workload that may swap, refuses to stop while a loop device holds the
image, and locks its own memory (it must never be swapped to itself).
"""

from tmem.engine.errors import SwapError
from tmem.swapdev.device import (
    DEFAULT_MOUNTPOINT,
    SwapDevice,
    SwapStatus,
    dead,
    off,
    on,
    reap,
    status,
    stop_refusal,
)
from tmem.swapdev.fusefs import SwapServer, lock_memory, unlock_memory
from tmem.swapdev.image import ImageStats, SwapImage
from tmem.swapdev.system import missing_support

__all__ = [
    "DEFAULT_MOUNTPOINT", "ImageStats", "SwapDevice", "SwapError",
    "SwapImage", "SwapServer", "SwapStatus", "dead", "lock_memory",
    "missing_support", "off", "on", "reap", "status", "stop_refusal",
    "unlock_memory",
]
