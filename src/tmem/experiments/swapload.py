"""A workload that must swap: more memory than its cgroup lets it keep.

The workload (`python -m tmem.experiments.swapload --mib N --cgroup P`)
joins the memory cgroup, maps N MiB of anonymous memory, fills every
page, then reads everything back twice and checks every byte.

Rules:
- Every page is non-zero and unique (a 16-byte stamp: run nonce, page
  number), because the kernel never writes zero-filled pages to swap and
  a duplicate could hide a page served from the wrong slot.
- Even pages are real data from tmem.corpus (Python sources and shared
  libraries: compressible); odd pages are random bytes (not).
- It speaks one JSON line per phase on stdout and waits for a line on
  stdin after the fill and at the end, so the driver can sample the swap
  backend while the pages are still out.  Phase times exclude the waits.
- Exit status 0 only if every page read back exactly, both times.

`run_workload` drives it in a fresh cgroup and always removes the cgroup.
"""

from __future__ import annotations

import argparse
import json
import mmap
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from tmem import corpus
from tmem.engine.errors import SwapError
from tmem.engine.handles import PAGE_SIZE
from tmem.experiments.memcg import DEFAULT_SWAPPINESS, MemoryCgroup, join
from tmem.swapdev.system import meminfo

_STAMP = struct.Struct("<QQ")
_NOISE_BYTES = 4 << 20
_TEXT_PAGES = 1024
READ_PASSES = 2


# -- the workload process ----------------------------------------------------


class PageMaker:
    """The expected content of every page of one run."""

    def __init__(self, seed: int) -> None:
        self.nonce = seed | 1  # never zero
        self.real = [p[_STAMP.size:]
                     for p in corpus.pages(_TEXT_PAGES, distinct=True)
                     if any(p)]
        self.noise = random.Random(seed).randbytes(_NOISE_BYTES)
        self.span = _NOISE_BYTES - PAGE_SIZE

    def page(self, number: int) -> bytes:
        stamp = _STAMP.pack(self.nonce, number)
        if number % 2 == 0:
            return stamp + self.real[(number // 2) % len(self.real)]
        at = number * 2053 % self.span
        return stamp + self.noise[at:at + PAGE_SIZE - _STAMP.size]


def _fill(memory: mmap.mmap, maker: PageMaker, pages: int) -> None:
    for n in range(pages):
        at = n * PAGE_SIZE
        memory[at:at + PAGE_SIZE] = maker.page(n)


def _verify(memory: mmap.mmap, maker: PageMaker, pages: int) -> list[int]:
    """Page numbers whose content is wrong."""
    return [n for n in range(pages)
            if memory[n * PAGE_SIZE:(n + 1) * PAGE_SIZE] != maker.page(n)]


def _say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def workload_main(argv: list[str] | None = None) -> int:
    """The workload process; returns its exit status."""
    parser = argparse.ArgumentParser(prog="tmem.experiments.swapload")
    parser.add_argument("--mib", type=int, required=True)
    parser.add_argument("--cgroup")
    parser.add_argument("--seed", type=int, default=0x7e3a)
    args = parser.parse_args(argv)
    if args.cgroup:
        join(args.cgroup)
    maker = PageMaker(args.seed)
    pages = args.mib * (1 << 20) // PAGE_SIZE
    memory = mmap.mmap(-1, pages * PAGE_SIZE)

    start = time.perf_counter()
    _fill(memory, maker, pages)
    _say("filled", seconds=time.perf_counter() - start)
    sys.stdin.readline()
    bad_total = 0
    for number in range(1, READ_PASSES + 1):
        start = time.perf_counter()
        bad = _verify(memory, maker, pages)
        bad_total += len(bad)
        _say("read", number=number, seconds=time.perf_counter() - start,
             bad_pages=len(bad), first_bad=bad[:5])
    _say("done", bad_pages=bad_total)
    sys.stdin.readline()
    return 0 if bad_total == 0 else 1


# -- driving it --------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadResult:
    """One run: phase times, what swapped, and whether it verified."""

    mib: int
    limit: int
    fill_seconds: float
    read_seconds: tuple[float, ...]
    bad_pages: int
    exit_status: int
    pswpout: int
    """Pages swapped out machine-wide during the run (/proc/vmstat)."""
    pswpin: int
    pswpout_fill: int
    pswpin_read: int

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and self.bad_pages == 0

    @property
    def swap_out_mib_s(self) -> float:
        """MiB of the array filled per second (the workload's view)."""
        return self.mib / self.fill_seconds

    @property
    def swap_in_mib_s(self) -> float:
        """MiB of the array read back per second, over both passes."""
        return self.mib * len(self.read_seconds) / sum(self.read_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mib": self.mib, "limit": self.limit,
            "fill_seconds": self.fill_seconds,
            "read_seconds": list(self.read_seconds),
            "bad_pages": self.bad_pages, "exit_status": self.exit_status,
            "ok": self.ok, "pswpout": self.pswpout, "pswpin": self.pswpin,
            "pswpout_fill": self.pswpout_fill,
            "pswpin_read": self.pswpin_read,
            "swap_out_mib_s": self.swap_out_mib_s,
            "swap_in_mib_s": self.swap_in_mib_s,
        }


Sampler = Callable[[str], None]
"""Called while the workload waits: "filled" (pages are out), "done"."""


def run_workload(mib: int, limit: int, sample: Sampler | None = None,
                 timeout: float = 300.0,
                 swappiness: int = DEFAULT_SWAPPINESS) -> WorkloadResult:
    """Run the workload once in a fresh memory cgroup of `limit` bytes.

    Raises:
        SwapError: the workload died or a phase overran `timeout` (it is
            killed and the cgroup removed either way); the message says
            whether the cgroup's OOM killer took it.
    """
    with MemoryCgroup(limit, swappiness=swappiness) as cgroup, \
            tempfile.TemporaryFile() as stderr, \
            subprocess.Popen(
                [sys.executable, "-m", "tmem.experiments.swapload",
                 "--mib", str(mib), "--cgroup", cgroup.path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr,
                bufsize=0) as process:  # unbuffered: select() sees lines
        events = _Events(process, cgroup, stderr, timeout)
        try:
            return _drive(events, mib, limit, sample)
        finally:
            if process.poll() is None:
                process.kill()


def _drive(events: _Events, mib: int, limit: int,
           sample: Sampler | None) -> WorkloadResult:
    before = vmstat()
    filled = events.next("filled")
    after_fill = vmstat()
    if sample is not None:
        sample("filled")
    events.resume()
    before_read = vmstat()
    reads = [events.next("read") for _ in range(READ_PASSES)]
    done = events.next("done")
    after = vmstat()
    if sample is not None:
        sample("done")
    events.resume()
    status = events.process.wait(events.timeout)
    return WorkloadResult(
        mib, limit, filled["seconds"],
        tuple(r["seconds"] for r in reads), done["bad_pages"], status,
        pswpout=after["pswpout"] - before["pswpout"],
        pswpin=after["pswpin"] - before["pswpin"],
        pswpout_fill=after_fill["pswpout"] - before["pswpout"],
        pswpin_read=after["pswpin"] - before_read["pswpin"])


@dataclass
class _Events:
    """The workload's phase lines, and why it stopped giving them."""

    process: subprocess.Popen[bytes]
    cgroup: MemoryCgroup
    stderr: IO[bytes]
    timeout: float

    def next(self, event: str) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], self.timeout)
        line = stdout.readline() if ready else b""
        if not line:
            raise SwapError(f"workload gave no {event!r} within "
                            f"{self.timeout:g} s: {self._death()}")
        fields: dict[str, Any] = json.loads(line)
        if fields.get("event") != event:
            raise SwapError(f"workload said {fields!r}, expected {event!r}")
        return fields

    def resume(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"go\n")
        stdin.flush()

    def _death(self) -> str:
        """Kill the workload if it still runs; say how it ended."""
        if self.process.poll() is None:
            self.process.kill()
        status = self.process.wait()
        kills = self.cgroup.oom_kills()
        if kills:
            return (f"the OOM killer of its cgroup (limit {self.cgroup.limit}"
                    f" bytes) killed it: {swap_space()}")
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace").strip()
        last = tail.splitlines()[-1] if tail else "(no stderr)"
        return f"exit status {status}: {last}"


def swap_space() -> str:
    """The machine's swap, for messages: "swap 12 of 1024 MiB in use"."""
    info = meminfo()
    total, free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
    if total == 0:
        return "the machine has no swap on"
    return f"swap {(total - free) >> 20} of {total >> 20} MiB in use"


def vmstat() -> dict[str, int]:
    """/proc/vmstat as a dict."""
    with open("/proc/vmstat") as f:
        pairs = (line.split() for line in f.read().splitlines())
        return {key: int(value) for key, value in pairs}


if __name__ == "__main__":
    sys.exit(workload_main())
