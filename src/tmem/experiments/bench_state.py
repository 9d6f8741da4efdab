"""`tmem bench state`: save, restore and live migration of persistent pages.

- Save and restore: an embedded host holds a client with `pages` pages of
  real data (this machine's files, reused in turn when the corpus is
  smaller than asked) in a persistent pool; it is saved to a file in a
  temporary folder and restored into a fresh host.  Throughput is MiB of
  page data per second (4 KiB per page, whatever the compression).
- Migration: two daemons run as their own processes; a client fills one
  with the same pages, then keeps putting and getting in a thread while
  `migrate` moves it to the other.  Reported: the client's pause (the
  source stops reading it, sends the journal, and points it elsewhere),
  the whole migration time, and that every page reads back afterwards.

Target: a pause under 100 ms for a client with 1 GiB of persistent pages.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tmem
from tmem import corpus
from tmem.experiments.measure import Target, server_process, status

GIB_PAGES = 1 << 18


def run(pages: int = GIB_PAGES, progress: bool = True) -> dict[str, Any]:
    """Run both measurements; return one JSON-ready dict."""
    workdir = Path(tempfile.mkdtemp(prefix="tmem-bench-state-"))
    try:
        with status(progress, "bench state") as say:
            say("loading real pages")
            data = _pages(pages)
            say("save and restore")
            disk = _save_restore(data, workdir)
            say("live migration between two daemons")
            move = _migration(data, workdir, say)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"pages": pages, "page_mib": pages * 4096 / 2**20,
              "save_restore": disk, "migration": move}
    result["targets"] = [Target(
        "migration pause, ms", move["pause_ms"], 100.0, False,
        " ms").as_dict()]
    return result


def _pages(count: int) -> list[bytes]:
    base = corpus.pages(min(count, 120_000))
    return [base[i % len(base)] for i in range(count)]


def _save_restore(data: list[bytes], workdir: Path) -> dict[str, Any]:
    host = tmem.Host(capacity="8GiB", compress="lz4")
    swap = host.client("saved").new_pool(persistent=True)
    for start in range(0, len(data), 1024):
        swap.put_many([(i >> 10, i & 1023, data[i])
                       for i in range(start, min(start + 1024, len(data)))])
    path = workdir / "client.tmem"
    began = time.perf_counter()
    with open(path, "wb") as f:
        host.save("saved", f)
    saved = time.perf_counter() - began
    size = path.stat().st_size
    del host, swap

    target = tmem.Host(capacity="8GiB")
    began = time.perf_counter()
    with open(path, "rb") as f:
        (client,) = target.restore(io.BufferedReader(f))
    restored = time.perf_counter() - began
    mib = len(data) * 4096 / 2**20
    ok = client.pool(0).get(0, 5) == data[5]
    return {"file_mib": size / 2**20, "save_mib_s": mib / saved,
            "restore_mib_s": mib / restored, "save_s": saved,
            "restore_s": restored, "verified_sample": ok}


def _migration(data: list[bytes], workdir: Path,
               say: Callable[[str], None]) -> dict[str, Any]:
    with _daemon(workdir / "a.sock") as a, _daemon(workdir / "b.sock") as b:
        client = tmem.connect(a, name="moving")
        swap = client.new_pool(persistent=True)
        say("filling the source daemon")
        for start in range(0, len(data), 1024):
            swap.put_many([(i >> 10, i & 1023, data[i]) for i in
                           range(start, min(start + 1024, len(data)))])
        stop = threading.Event()
        churn = threading.Thread(target=_churn, args=(swap, data, stop))
        churn.start()
        say("migrating while the client keeps working")
        with tmem.connect_control(a) as control:
            report = control.migrate("moving", b)
        stop.set()
        churn.join()
        say("verifying every page on the target")
        bad = _verify(swap, data)
        address = str(client.address)
        client.close()
    return {"pause_ms": float(str(report["pause_ms"])),
            "seconds": float(str(report["seconds"])),
            "pages_copied": int(str(report["pages"])),
            "client_now_at_target": address == b,
            "pages_wrong_after": bad}


def _churn(swap: Any, data: list[bytes], stop: threading.Event) -> None:
    """Rewrite a few thousand pages with their own data while moving."""
    n = 0
    while not stop.is_set():
        i = (n * 7919) % len(data)
        swap.put(i >> 10, i & 1023, data[i])
        n += 1


def _verify(swap: Any, data: list[bytes]) -> int:
    bad = 0
    for start in range(0, len(data), 1024):
        got = swap.get_many([(i >> 10, i & 1023) for i in
                             range(start, min(start + 1024, len(data)))])
        bad += sum(g != data[start + k] for k, g in enumerate(got))
    return bad


@contextmanager
def _daemon(sock: Path) -> Iterator[str]:
    command = [sys.executable, "-m", "tmem.cli", "serve", "--socket",
               str(sock), "--capacity", "8GiB"]
    with server_process(command, sock, "a daemon for the benchmark"):
        yield f"unix:{sock}"


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tmem.experiments.bench_engine import print_targets

    console = Console()
    disk, move = result["save_restore"], result["migration"]
    table = Table(title=f"{result['pages']:,} persistent pages "
                  f"({result['page_mib']:,.0f} MiB of page data)")
    for col in ("measure", "value"):
        table.add_column(col, justify="right")
    table.add_row("save (lz4 pages kept compressed)",
                  f"{disk['save_mib_s']:,.0f} MiB/s")
    table.add_row("stream file size", f"{disk['file_mib']:,.0f} MiB")
    table.add_row("restore (checked, then applied)",
                  f"{disk['restore_mib_s']:,.0f} MiB/s")
    table.add_row("migration, total", f"{move['seconds']:.1f} s")
    table.add_row("migration, client pause", f"{move['pause_ms']:.1f} ms")
    table.add_row("pages wrong after migration",
                  f"{move['pages_wrong_after']}")
    console.print(table)
    print_targets(console, result["targets"])
