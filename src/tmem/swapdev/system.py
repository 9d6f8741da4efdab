"""The machine, as the swap device sees it: commands, /proc, support.

Rules:
- Every command runs with a timeout; a command that fails or overruns
  raises `SwapError` naming the command, its status and its last line of
  stderr.  A command that overruns is killed.
- Facts come from /proc and /sys as text through small parsers that take
  the text, so tests feed them fixed samples.
- `missing_support()` lists every reason the swap device cannot run here
  (not root, no /dev/fuse, no libfuse3, a missing tool), each one line
  saying what to install or change.
"""

from __future__ import annotations

import ctypes.util
import errno
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

from tmem.engine.errors import SwapError

TOOLS = ("losetup", "mkswap", "swapon", "swapoff", "umount")
"""The util-linux commands the device drives."""

DEFAULT_TIMEOUT = 30.0
"""Seconds a command may take unless the caller knows better."""

_OCTAL = re.compile(r"\\([0-7]{3})")


def run(argv: list[str], timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run a command; return its stdout.

    Raises:
        SwapError: it exited non-zero, could not start, or ran longer than
            `timeout` seconds (it is then killed).
    """
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SwapError(f"{' '.join(argv)!r} did not finish in {timeout:g}"
                        " s and was killed") from None
    except OSError as error:
        raise SwapError(f"{' '.join(argv)!r} could not start: "
                        f"{error.strerror}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        raise SwapError(f"{' '.join(argv)!r} failed with status "
                        f"{done.returncode}: {lines[-1]}")
    return done.stdout


# -- support -----------------------------------------------------------------


def libfuse3_path() -> str | None:
    """The libfuse3 shared library's name for dlopen, or None."""
    return ctypes.util.find_library("fuse3")


def missing_support() -> list[str]:
    """Why the swap device cannot run on this machine (empty: it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("not root: loop devices and swapon need root")
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse is missing: the kernel needs FUSE "
                       "(CONFIG_FUSE_FS)")
    if libfuse3_path() is None:
        missing.append("libfuse3 is not installed: apt-get install fuse3 "
                       "libfuse3-3 (scripts/setup.sh does it as root)")
    if not os.path.exists("/dev/loop-control"):
        missing.append("/dev/loop-control is missing: the kernel needs "
                       "loop devices (CONFIG_BLK_DEV_LOOP)")
    missing += [f"{tool!r} is not on PATH: apt-get install util-linux "
                "mount" for tool in TOOLS if shutil.which(tool) is None]
    return missing


# -- /proc/swaps -------------------------------------------------------------


@dataclass(frozen=True)
class SwapArea:
    """One line of /proc/swaps."""

    name: str
    kind: str
    """"partition" or "file"."""
    size: int
    """Bytes."""
    used: int
    """Bytes of the area holding swapped-out pages."""
    priority: int


def parse_swaps(text: str) -> list[SwapArea]:
    """Parse /proc/swaps (sizes there are KiB)."""
    areas = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        name = _unescape(fields[0])
        areas.append(SwapArea(name, fields[1], int(fields[2]) * 1024,
                              int(fields[3]) * 1024, int(fields[4])))
    return areas


def swap_areas() -> list[SwapArea]:
    """The active swap areas."""
    with open("/proc/swaps") as f:
        return parse_swaps(f.read())


def swap_area(name: str) -> SwapArea | None:
    """The active swap area of this device or file, if any."""
    return next((a for a in swap_areas() if a.name == name), None)


# -- /proc/meminfo -----------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """Parse /proc/meminfo into bytes (or counts, for the few without kB)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if not fields:
            continue
        scale = 1024 if fields[1:2] == ["kB"] else 1
        values[key] = int(fields[0]) * scale
    return values


def meminfo() -> dict[str, int]:
    """/proc/meminfo now, in bytes (empty where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            return parse_meminfo(f.read())
    except OSError:
        return {}


def mem_available() -> int:
    """Bytes the kernel estimates it can give without swapping."""
    return meminfo()["MemAvailable"]


# -- mounts and loop devices -------------------------------------------------


def parse_mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, file system type) in /proc/self/mountinfo, in order."""
    mounts = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if len(fields) > 4:
            kind = tail.split()[0] if tail.split() else ""
            mounts.append((_unescape(fields[4]), kind))
    return mounts


def parse_mount_points(mountinfo: str) -> list[str]:
    """The mount points in /proc/self/mountinfo, in order."""
    return [point for point, _ in parse_mounts(mountinfo)]


def mount_points_of_type(kind: str) -> list[str]:
    """Where file systems of type `kind` ("fuse.tmem") are mounted."""
    with open("/proc/self/mountinfo") as f:
        return [point for point, k in parse_mounts(f.read()) if k == kind]


def is_mounted(path: str) -> bool:
    """Whether something is mounted at `path`."""
    with open("/proc/self/mountinfo") as f:
        points = parse_mount_points(f.read())
    return os.path.realpath(path) in points or path in points


def fuse_server_gone(path: str, timeout: float = 5.0) -> bool:
    """Whether the FUSE mount at `path` has lost its server.

    The kernel answers ENOTCONN for a mount whose server died.  A server
    that does not answer within `timeout` seconds counts as alive: slow
    is not gone, and only a dead one may be taken down.
    """
    answer: list[int] = []

    def ask() -> None:
        try:
            os.statvfs(path)
            answer.append(0)
        except OSError as error:
            answer.append(error.errno or 0)

    asker = threading.Thread(target=ask, name="tmem-fuse-probe", daemon=True)
    asker.start()
    asker.join(timeout)
    return bool(answer) and answer[0] in (errno.ENOTCONN, errno.ECONNABORTED)


def loops_backed_by(path: str, sys_block: str = "/sys/block") -> list[str]:
    """The loop devices (/dev/loopN) whose backing file is `path`."""
    found = []
    for name in sorted(os.listdir(sys_block)):
        backing = os.path.join(sys_block, name, "loop", "backing_file")
        try:
            with open(backing) as f:
                if f.read().strip() == path:
                    found.append(f"/dev/{name}")
        except OSError:
            continue
    return found


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes (\\040 for a space) in /proc."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)
