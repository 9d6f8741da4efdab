"""Small tools every benchmark shares: pinning, timing, RSS, servers to
measure, targets.

Rules:
- Times are best-of-N wall-clock seconds (`time.perf_counter`): on a
  machine shared with other work the minimum is the least noisy
  estimate of the work itself.
- Memory is resident set size from /proc/self/statm, read after a full
  garbage collection.
- A server under test is a process started here on a Unix socket; it is
  sent SIGTERM at the end, and SIGKILL if it has not gone 20 s later.
- A target is recorded with its measured value and whether it was met;
  benchmarks report misses, they never hide them.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tmem.engine.errors import TmemError


class RunFailed(TmemError):
    """A run could not finish; nothing it measured is reported."""


def pin_to_one_core() -> int | None:
    """Pin this process to the last CPU it may use; return it (or None)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        return cpus[-1]
    except (AttributeError, OSError):
        return None


def best_time(run: Callable[[], object], repeats: int,
              setup: Callable[[], object] | None = None) -> float:
    """Fastest of `repeats` runs of `run` (after `setup`, untimed)."""
    best = float("inf")
    for _ in range(repeats):
        if setup is not None:
            setup()
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


@contextmanager
def status(show: bool, what: str) -> Iterator[Callable[[str], None]]:
    """A one-line spinner on stderr saying what runs now (or nothing)."""
    if not show:
        yield lambda _: None
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as line:
        yield lambda text: line.update(f"{what}: {text}")


def rss_bytes() -> int:
    """Resident memory of this process after a garbage collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_of(pid: int) -> int:
    """Resident bytes of another process (VmRSS).

    Raises:
        RunFailed: it has exited.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    raise RunFailed(f"process {pid} has no VmRSS: it has exited")


@contextmanager
def server_process(command: list[str], sock: Path, what: str,
                   timeout: float = 30.0
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server, wait until its Unix socket exists, yield it, stop it.

    Raises:
        RunFailed: it exited or made no socket in `timeout` seconds.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if process.poll() is not None:
                raise RunFailed(f"{what} exited at start (code "
                                f"{process.returncode})")
            if time.monotonic() > deadline:
                raise RunFailed(f"{what} did not start in {timeout:g} s")
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Target:
    """One target of an issue, with what was measured."""

    name: str
    measured: float
    limit: float
    higher_is_better: bool
    unit: str = ""

    @property
    def met(self) -> bool:
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}
