"""Real frontswap: the Linux kernel swaps into a tmem persistent pool.

Linux dropped its frontswap hooks in 6.5, so the pool is offered to the
kernel as an ordinary swap device:

    kernel swap -> loop device -> swap.img on a FUSE mount -> PoolAPI

- image.py: the file's logic: byte offsets to (oid, index) pages, reads,
  writes, punched holes (discards = flushes), counters.
- fusefs.py: `SwapServer`, the FUSE file system serving one image
  (direct_io, so every swap-out is a put and every swap-in a get).
- system.py: commands with timeouts, /proc parsers, `SwapError`, and
  `missing_support()`.
"""

from tmem.swapdev.fusefs import SwapServer, lock_memory
from tmem.swapdev.image import ImageStats, SwapImage
from tmem.swapdev.system import SwapError, missing_support

__all__ = [
    "ImageStats", "SwapError", "SwapImage", "SwapServer", "lock_memory",
    "missing_support",
]
