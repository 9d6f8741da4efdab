"""Memory cgroups that make a workload swap: create, limit, remove.

Rules:
- Both cgroup versions: v1 (a `memory` hierarchy, memory.limit_in_bytes)
  and v2 (the unified hierarchy, memory.max).  v1 wins when both are
  mounted but only v1 has the memory controller (a hybrid set-up whose
  cgroup2 mount offers other controllers only).
- A cgroup is made directly under the hierarchy's root with a unique
  name (prefix, pid, random), so runs on a shared machine never collide.
  Making one first removes the leftovers of drivers that died (same
  prefix, pid no longer running) and kills what they left inside.
- Its swappiness is set, not inherited (v1: memory.swappiness): a
  machine whose vm.swappiness is 0 would otherwise never swap from a
  limited cgroup, and its workload dies of the OOM killer at once.  v2
  has no per-cgroup swappiness, so there vm.swappiness 0 is refused.
- A process joins by writing its own pid (`join`), before it allocates.
- `remove()` kills what is still inside (only members of this cgroup),
  waits for them to go, then removes the directory.  It is idempotent
  and runs from `with` and test finalizers even after failures.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from dataclasses import dataclass
from types import TracebackType

from tmem.engine.errors import SwapError

DEFAULT_SWAPPINESS = 60


@dataclass(frozen=True)
class Hierarchy:
    """Where memory cgroups live, and which interface they speak."""

    root: str
    version: int

    @property
    def limit_file(self) -> str:
        return "memory.limit_in_bytes" if self.version == 1 else "memory.max"


def parse_hierarchies(mounts: str) -> list[Hierarchy]:
    """Memory-capable hierarchies in /proc/self/mounts, v1 first.

    A cgroup2 mount is listed only if its cgroup.controllers file says
    it offers memory (read from the live mount).
    """
    found = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        path, kind, options = fields[1], fields[2], fields[3].split(",")
        if kind == "cgroup" and "memory" in options:
            found.append(Hierarchy(path, 1))
        elif kind == "cgroup2" and _offers_memory(path):
            found.append(Hierarchy(path, 2))
    return sorted(found, key=lambda h: h.version)


def find_hierarchy() -> Hierarchy | None:
    """The hierarchy to make memory cgroups in, or None."""
    with open("/proc/self/mounts") as f:
        found = parse_hierarchies(f.read())
    return found[0] if found else None


def join(path: str) -> None:
    """Move the calling process into the cgroup at `path`."""
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))


class MemoryCgroup:
    """A fresh memory cgroup with a limit.

    Args:
        limit: bytes its members may keep in RAM; the rest swaps.
        prefix: the start of its unique name.
        swappiness: how readily reclaim swaps anonymous memory (0-200;
            the kernel's default is 60).

    Raises:
        SwapError: no memory hierarchy, swappiness cannot be had, or the
            kernel refused.
    """

    def __init__(self, limit: int, prefix: str = "tmem-swap",
                 swappiness: int = DEFAULT_SWAPPINESS) -> None:
        hierarchy = find_hierarchy()
        if hierarchy is None:
            raise SwapError("no cgroup hierarchy offers the memory "
                              "controller (checked /proc/self/mounts)")
        self.hierarchy = hierarchy
        self.limit = limit
        self.path = os.path.join(
            hierarchy.root, f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            if hierarchy.version == 2:
                _enable_memory(hierarchy.root)
            _remove_leftovers(hierarchy.root, prefix)
            os.mkdir(self.path)
            self._write(hierarchy.limit_file, str(limit))
            self._set_swappiness(swappiness)
        except OSError as error:
            self.remove()
            raise SwapError(f"cannot make memory cgroup {self.path!r} "
                              f"limited to {limit!r} bytes: "
                              f"{error.strerror}") from None

    def __repr__(self) -> str:
        return f"<MemoryCgroup {self.path!r} v{self.hierarchy.version}>"

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(self, kind: type[BaseException] | None,
                 error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()

    def procs(self) -> list[int]:
        """Pids inside (empty once removed)."""
        return _procs(self.path)

    def oom_kills(self) -> int:
        """Members its OOM killer has killed (0 once removed)."""
        name = ("memory.oom_control" if self.hierarchy.version == 1
                else "memory.events")
        try:
            with open(os.path.join(self.path, name)) as f:
                pairs = (line.split() for line in f.read().splitlines())
                return {k: int(v) for k, v in pairs}.get("oom_kill", 0)
        except FileNotFoundError:
            return 0

    def remove(self, timeout: float = 10.0) -> None:
        """Kill the members left, wait for them, remove the cgroup.

        Raises:
            SwapError: it could not be removed in `timeout` seconds.
        """
        _remove(self.path, timeout)

    def _set_swappiness(self, swappiness: int) -> None:
        if self.hierarchy.version == 1:
            self._write("memory.swappiness", str(swappiness))
            return
        with open("/proc/sys/vm/swappiness") as f:
            machine = int(f.read())
        if machine == 0 < swappiness:
            self.remove()
            raise SwapError("vm.swappiness is 0, so a cgroup v2 workload "
                            "never swaps: set it above 0 "
                            "(sysctl vm.swappiness=60)")

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)


def _procs(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


def _remove(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while os.path.isdir(path):
        for pid in _procs(path):
            _kill(pid)
        try:
            os.rmdir(path)
        except OSError as error:
            if time.monotonic() > deadline:
                raise SwapError(
                    f"cannot remove memory cgroup {path!r} in "
                    f"{timeout:g} s: {error.strerror}") from None
            time.sleep(0.05)


def _remove_leftovers(root: str, prefix: str, timeout: float = 10.0) -> None:
    """Remove `prefix` cgroups whose maker's pid no longer runs."""
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)-[0-9a-f]{{8}}")
    for name in os.listdir(root):
        match = pattern.fullmatch(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            _remove(os.path.join(root, name), timeout)


def _offers_memory(root: str) -> bool:
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            return "memory" in f.read().split()
    except OSError:
        return False


def _enable_memory(root: str) -> None:
    """v2: let the root's children use the memory controller."""
    control = os.path.join(root, "cgroup.subtree_control")
    with open(control) as f:
        if "memory" in f.read().split():
            return
    with open(control, "w") as f:
        f.write("+memory")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
