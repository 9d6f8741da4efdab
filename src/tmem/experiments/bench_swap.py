"""`tmem bench swap`: the kernel swapping into tmem, zram and a disk file.

The same workload (swapload.py: 600 MiB of page-unique data, half real
corpus pages, half random, in a 200 MiB memory cgroup, read back twice
and verified) runs on each swap backend in turn, alone and at top
priority:
- tmem: the FUSE swap image served by a standalone server process with
  an embedded Host (swapdev);
- zram with lz4, and with lzo-rle (a hot-added device, removed after);
- a swap file on the root file system's disk.

What it reports, per backend (best run by swap-in, if repeated):
- swap-out and swap-in MiB/s as the workload sees them: MiB of its array
  filled, or read back over both passes, per second.  Device-level MiB/s
  (/proc/vmstat pswpout/pswpin) come alongside; they are not comparable
  across backends, as zram swaps out more pages for the same work.
- host memory per swapped page, sampled while the pages are out (after
  the fill and after the reads; the larger counts): zram's mm_stat
  mem_used_total over its stored pages; for tmem the server process's
  RSS growth over the pool's pages, and the pool's own accounting.

Noise: on a shared 2-vCPU VM, runs differ by +-40%.  Busy neighbours
hurt tmem most (its server must be scheduled for every request, zram
runs in the faulting task), so the load average is recorded with the
results.

Targets: tmem swap-in >= the disk file's and >= 0.7x zram lz4's; tmem
host bytes per swapped page <= zram's (lz4, like tmem's default codec).
Misses are reported, never hidden.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tmem import swapdev
from tmem.engine.errors import SwapError
from tmem.engine.handles import PAGE_SIZE
from tmem.experiments.measure import RunFailed, Target, rss_of
from tmem.experiments.swapload import WorkloadResult, run_workload
from tmem.swapdev.system import run, swap_areas

BACKENDS = ("tmem", "zram-lz4", "zram-lzo-rle", "disk")
PRIORITY = 32767
"""The highest swap priority: the backend under test is used first."""

Step = Callable[[str], None]


# -- backends ----------------------------------------------------------------


class Backend(Protocol):
    """A swap area the workload can run on."""

    name: str

    def setup(self) -> None: ...

    def sample(self) -> dict[str, Any]: ...

    def teardown(self) -> None: ...


class TmemBackend:
    """The tmem swap image, served by a standalone server process."""

    def __init__(self, size: int, compress: str) -> None:
        self.name = "tmem"
        self.size = size
        self.compress = compress
        self.scratch = tempfile.mkdtemp(prefix="tmem-bench-swap-")
        self.mountpoint = os.path.join(self.scratch, "mnt")
        self.device: swapdev.SwapDevice | None = None
        self.rss_base = 0

    def setup(self) -> None:
        self.device = swapdev.on(self.size, PRIORITY, self.mountpoint,
                                 compress=self.compress)
        self.rss_base = rss_of(self.device.server_pid)

    def sample(self) -> dict[str, Any]:
        status = swapdev.status(self.mountpoint)
        image, pages = status.image, status.image.pages_stored
        rss = rss_of(status.server_pid) - self.rss_base
        return {
            "pages": pages, "rss_growth": rss,
            "bytes_per_page": rss / pages if pages else 0.0,
            "accounted_per_page": image.stored_bytes / pages if pages
            else 0.0,
            "compression_ratio": image.compression_ratio,
        }

    def teardown(self) -> None:
        server = None if self.device is None else self.device.server
        swapdev.off(self.mountpoint, server=server)
        with contextlib.suppress(OSError):
            os.remove(self.mountpoint + ".log")
        with contextlib.suppress(OSError):
            os.rmdir(self.scratch)


class ZramBackend:
    """A hot-added zram device with one compression algorithm."""

    def __init__(self, size: int, algorithm: str) -> None:
        self.name = f"zram-{algorithm}"
        self.size = size
        self.algorithm = algorithm
        self.number: int | None = None

    @property
    def sysfs(self) -> str:
        return f"/sys/block/zram{self.number}"

    def setup(self) -> None:
        with open("/sys/class/zram-control/hot_add") as f:
            self.number = int(f.read())
        # the algorithm must be set before the size
        _write(f"{self.sysfs}/comp_algorithm", self.algorithm)
        _write(f"{self.sysfs}/disksize", str(self.size))
        run(["mkswap", f"/dev/zram{self.number}"])
        run(["swapon", "--priority", str(PRIORITY),
             f"/dev/zram{self.number}"])

    def sample(self) -> dict[str, Any]:
        with open(f"{self.sysfs}/mm_stat") as f:
            fields = [int(v) for v in f.read().split()]
        orig, compr, used = fields[0], fields[1], fields[2]
        pages = orig // PAGE_SIZE
        return {
            "pages": pages, "mem_used_total": used,
            "bytes_per_page": used / pages if pages else 0.0,
            "compression_ratio": orig / compr if compr else 1.0,
        }

    def teardown(self) -> None:
        if self.number is None:
            return
        device = f"/dev/zram{self.number}"
        if any(a.name == device for a in swap_areas()):
            run(["swapoff", device], 120)
        _write(f"{self.sysfs}/reset", "1")
        _write("/sys/class/zram-control/hot_remove", str(self.number))
        self.number = None


class DiskBackend:
    """A swap file on the root file system's disk."""

    def __init__(self, size: int, folder: str = "/var/tmp") -> None:
        self.name = "disk"
        self.size = size
        self.folder = folder
        self.path: str | None = None

    def setup(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="tmem-bench-swapfile-",
                                             dir=self.folder)
        try:
            os.fchmod(handle, 0o600)
            os.posix_fallocate(handle, 0, self.size)
        finally:
            os.close(handle)
        run(["mkswap", self.path])
        run(["swapon", "--priority", str(PRIORITY), self.path])

    def sample(self) -> dict[str, Any]:
        return {}

    def teardown(self) -> None:
        if self.path is None:
            return
        if any(a.name == self.path for a in swap_areas()):
            run(["swapoff", self.path], 120)
        os.remove(self.path)
        self.path = None


def make_backend(name: str, size: int, compress: str) -> Backend:
    if name == "tmem":
        return TmemBackend(size, compress)
    if name.startswith("zram-"):
        return ZramBackend(size, name[len("zram-"):])
    if name == "disk":
        return DiskBackend(size)
    raise SwapError(f"backend {name!r} is unknown: use one of "
                    f"{', '.join(BACKENDS)}")


# -- running -----------------------------------------------------------------


@dataclass
class BackendResult:
    """Every run of one backend, and the memory samples of each."""

    name: str
    runs: list[WorkloadResult] = field(default_factory=list)
    samples: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None

    def best(self) -> int | None:
        """Index of the run with the fastest swap-in."""
        if not self.runs:
            return None
        return max(range(len(self.runs)),
                   key=lambda i: self.runs[i].swap_in_mib_s)

    def as_dict(self) -> dict[str, Any]:
        best = self.best()
        row: dict[str, Any] = {"backend": self.name, "error": self.error,
                               "runs": [r.as_dict() for r in self.runs],
                               "samples": self.samples}
        if best is not None:
            chosen = self.runs[best]
            row.update(
                ok=all(r.ok for r in self.runs),
                swap_out_mib_s=chosen.swap_out_mib_s,
                swap_in_mib_s=chosen.swap_in_mib_s,
                device_out_mib_s=chosen.pswpout_fill * PAGE_SIZE
                / 2**20 / chosen.fill_seconds,
                device_in_mib_s=chosen.pswpin_read * PAGE_SIZE / 2**20
                / sum(chosen.read_seconds),
                memory=_worst_sample(self.samples[best]))
        return row


def run_bench(mib: int = 600, limit_mib: int = 200, size: int = 1 << 30,
              repeats: int = 1, backends: tuple[str, ...] = BACKENDS,
              compress: str = "lz4", progress: bool = True
              ) -> dict[str, Any]:
    """Run the workload on every backend; return one JSON-ready dict."""
    _check_machine(backends)
    others = [a.name for a in swap_areas()]
    load_before = os.getloadavg()[0]
    rows = []
    with _progress(progress) as step:
        for name in backends:
            result = _run_backend(make_backend(name, size, compress), mib,
                                  limit_mib << 20, repeats, step)
            rows.append(result.as_dict())
    result_dict: dict[str, Any] = {
        "mib": mib, "limit_mib": limit_mib, "swap_size": size,
        "repeats": repeats, "tmem_compress": compress,
        "other_swap_areas": others, "backends": rows,
        "loadavg_1m": [load_before, os.getloadavg()[0]],
    }
    result_dict["targets"] = [t.as_dict() for t in _targets(rows)]
    return result_dict


def _run_backend(backend: Backend, mib: int, limit: int, repeats: int,
                 step: Step) -> BackendResult:
    result = BackendResult(backend.name)
    try:
        step(f"{backend.name}: setting up")
        backend.setup()
        for number in range(1, repeats + 1):
            samples: dict[str, dict[str, Any]] = {}

            def sample(phase: str, _s: dict[str, Any] = samples,
                       _n: int = number) -> None:
                _s[phase] = backend.sample()
                if phase == "filled":
                    step(f"{backend.name} run {_n}/{repeats}: reading back"
                         " twice")

            step(f"{backend.name} run {number}/{repeats}: filling "
                 f"{mib} MiB")
            result.runs.append(run_workload(mib, limit, sample))
            result.samples.append(samples)
    except (SwapError, RunFailed) as error:
        result.error = str(error)
    finally:
        step(f"{backend.name}: tearing down")
        try:
            backend.teardown()
        except SwapError as error:
            result.error = f"{result.error or ''} teardown: {error}".strip()
    return result


def _check_machine(backends: tuple[str, ...]) -> None:
    if os.geteuid() != 0:
        raise SwapError("bench swap needs root: swapon, loop devices and "
                        "memory cgroups")
    if "tmem" in backends:
        missing = swapdev.missing_support()
        if missing:
            raise SwapError("tmem swap cannot run here: "
                            + "; ".join(missing))


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Step]:
    if not show:
        yield lambda _: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("starting") as status:
        yield lambda text: status.update(f"bench swap: {text}")


# -- results -----------------------------------------------------------------


def _worst_sample(samples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sample with the most bytes per page (the honest figure)."""
    if not samples or not any(samples.values()):
        return {}
    phase = max(samples, key=lambda p: samples[p].get("bytes_per_page", 0))
    return {"phase": phase, **samples[phase]}


def _targets(rows: list[dict[str, Any]]) -> list[Target]:
    by_name = {r["backend"]: r for r in rows if "swap_in_mib_s" in r}
    tmem = by_name.get("tmem")
    if tmem is None:
        return []
    targets = []
    disk, zram = by_name.get("disk"), by_name.get("zram-lz4")
    if disk is not None:
        targets.append(Target("swap-in, tmem / disk file",
                              tmem["swap_in_mib_s"] / disk["swap_in_mib_s"],
                              1.0, True, "x"))
    if zram is not None:
        targets.append(Target("swap-in, tmem / zram lz4",
                              tmem["swap_in_mib_s"] / zram["swap_in_mib_s"],
                              0.7, True, "x"))
    for name in ("zram-lz4", "zram-lzo-rle"):
        other = by_name.get(name)
        if other is None or not other["memory"]:
            continue
        targets.append(Target(
            f"host B/swapped page, tmem RSS vs {name}",
            tmem["memory"]["bytes_per_page"],
            other["memory"]["bytes_per_page"], False, "B"))
    return targets


def render(result: dict[str, Any]) -> None:
    """Print the result as tables."""
    from rich.console import Console
    from rich.table import Table

    from tmem.experiments.bench_engine import print_targets

    console = Console()
    table = Table(title=f"swap: {result['mib']} MiB workload in a "
                  f"{result['limit_mib']} MiB cgroup, best of "
                  f"{result['repeats']}")
    for col in ("backend", "out MiB/s", "in MiB/s", "device out/in",
                "pages out", "B/page", "ratio", "ok"):
        table.add_column(col, justify="right")
    for row in result["backends"]:
        table.add_row(*_row_cells(row))
    console.print(table)
    for row in result["backends"]:
        if row.get("backend") == "tmem" and row.get("memory"):
            m = row["memory"]
            console.print(f"tmem pool accounting: "
                          f"{m['accounted_per_page']:,.0f} B/page; server "
                          f"RSS growth {m['rss_growth'] / 2**20:,.1f} MiB "
                          f"for {m['pages']:,} pages ({m['phase']})")
        if row.get("error"):
            console.print(f"{row['backend']}: error: {row['error']}")
    before, after = result["loadavg_1m"]
    console.print(f"load average (1 min) {before:.2f} before, {after:.2f} "
                  f"after, on {os.cpu_count()} CPUs: other processes slow "
                  "tmem most, as its server must be scheduled per request")
    if result["other_swap_areas"]:
        console.print("other swap areas were active: "
                      + ", ".join(result["other_swap_areas"]))
    print_targets(console, result["targets"])


def _row_cells(row: dict[str, Any]) -> list[str]:
    if "swap_in_mib_s" not in row:
        return [row["backend"], "-", "-", "-", "-", "-", "-", "failed"]
    memory = row["memory"]
    per_page = (f"{memory['bytes_per_page']:,.0f}" if memory else "-")
    ratio = (f"{memory['compression_ratio']:.2f}" if memory else "-")
    pages = (f"{memory['pages']:,}" if memory else "-")
    return [row["backend"], f"{row['swap_out_mib_s']:,.0f}",
            f"{row['swap_in_mib_s']:,.0f}",
            f"{row['device_out_mib_s']:,.0f} / "
            f"{row['device_in_mib_s']:,.0f}",
            pages, per_page, ratio, "yes" if row["ok"] else "NO"]




def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as error:
        raise SwapError(f"writing {value!r} to {path} failed: "
                        f"{error.strerror}") from None
