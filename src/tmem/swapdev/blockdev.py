"""Root-level plumbing: swap image -> loop device -> swap area, and back.

The kernel refuses swap on a FUSE file directly ("swapfile has holes"),
so a loop device stands in between.  This module knows nothing of FUSE
or pools: it takes the image's path.

Rules:
- Attach: `losetup --find` (a free loop device, 4 KiB sectors so every
  request is whole pages), `mkswap`, `swapon --discard=pages` (freed
  swap clusters reach the image as punched holes, i.e. pool flushes).
  A failed step undoes the steps before it.
- Detach: swapoff, then losetup -d, for every loop device backed by the
  image.  It refuses before touching anything when swapoff could not
  bring the swapped pages back: their bytes exceed MemAvailable.
  swapoff would fail with ENOMEM after long work, or the OOM killer would
  act; freeing memory or ending the workload first is the way out.
- Detach is idempotent: whatever is already gone is skipped, so it also
  cleans up after a failed attach or a dead server.
- Every command has a timeout; swapoff's grows with the bytes it must
  read back.
"""

from __future__ import annotations

import logging

from tmem.engine.errors import SwapError
from tmem.engine.handles import format_size
from tmem.swapdev.system import (
    DEFAULT_TIMEOUT,
    SwapArea,
    loops_backed_by,
    mem_available,
    run,
    swap_area,
)

log = logging.getLogger(__name__)

SECTOR_SIZE = 4096
SWAPOFF_BYTES_PER_S = 16 << 20
"""The slowest read-back rate swapoff's timeout allows for (bytes/s)."""


def attach(image: str, priority: int | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> str:
    """Make `image` a swap area; return its loop device.

    Args:
        image: the swap image's path (on the FUSE mount).
        priority: swapon -p (-1..32767; higher is used first), or None
            for the kernel's default.
    """
    loop = run(["losetup", "--find", "--show", "--sector-size",
                str(SECTOR_SIZE), image], timeout).strip()
    try:
        run(["mkswap", loop], timeout)
        argv = ["swapon", "--discard=pages"]
        if priority is not None:
            argv += ["--priority", str(priority)]
        run([*argv, loop], timeout)
    except SwapError:
        _undo_attach(loop, timeout)
        raise
    return loop


def detach(image: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Swap off and free every loop device backed by `image`; return the
    steps done.

    Raises:
        SwapError: swapoff would not fit in memory (nothing was done), or
            a step failed.
    """
    loops = loops_backed_by(image)
    areas = [a for a in map(swap_area, loops) if a is not None]
    available = mem_available()
    for area in areas:
        check_swapoff_fits(area, available)

    steps = []
    for area in areas:
        run(["swapoff", area.name], swapoff_timeout(area, timeout))
        steps.append(f"swapoff {area.name} ({format_size(area.used)} "
                     "read back)")
    for loop in loops:
        run(["losetup", "--detach", loop], timeout)
        steps.append(f"losetup --detach {loop}")
    return steps


def check_swapoff_fits(area: SwapArea, available: int) -> None:
    """Raise SwapError unless the area's used bytes fit in `available`."""
    # XXX(#6): swapoff can still fail with ENOMEM, and the OOM killer then
    # acts in that cgroup, when the pages belong to a live workload whose
    # memory cgroup is too small to take them back: only MemAvailable is
    # checked here, not each owner's cgroup limit.
    if area.used > available:
        raise SwapError(
            f"swapoff {area.name} refused: {format_size(area.used)} in "
            f"swap exceeds MemAvailable {format_size(available)}; free "
            "memory or end the workload first")


def swapoff_timeout(area: SwapArea, base: float = DEFAULT_TIMEOUT) -> float:
    """Seconds swapoff may take to read back the area's pages."""
    return base + area.used / SWAPOFF_BYTES_PER_S


def _undo_attach(loop: str, timeout: float) -> None:
    """Best effort after a failed attach; the caller raises the cause."""
    for argv in (["swapoff", loop], ["losetup", "--detach", loop]):
        if argv[0] == "swapoff" and swap_area(loop) is None:
            continue
        try:
            run(argv, timeout)
        except SwapError as error:
            log.error("undoing a failed attach: %s", error)
