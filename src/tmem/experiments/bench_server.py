"""`tmem bench server`: tmemd against redis-server and memcached.

The same workload drives each server, started here on Unix sockets in a
temporary folder and stopped afterwards: N client processes each put their
own real 4 KiB pages (this machine's files, see corpus.py), then get them
back and verify every byte; once in batches of 32 (tmem put_many/get_many,
a redis pipeline, memcached set_many/get_many) and once a page per call.

Measured: pages/s of each phase (all clients' pages over the wall time from
the first start to the last finish) and host bytes per stored page (the
server's RSS growth over the put phase divided by the pages stored).
tmemd runs without compression, like its peers; a second tmem row shows
what lz4 costs and saves.

Targets: batched tmemd >= 2x redis and >= 1.2x memcached pages/s, and
bytes per page below both.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from tmem import corpus
from tmem.experiments.measure import (
    Target,
    rss_of,
    server_process,
    status,
)

BATCH = 32


@dataclass(frozen=True)
class System:
    name: str
    binary: str | None
    """The server program this row needs (None: tmem itself)."""
    package: str


SYSTEMS = (
    System("tmem", None, ""),
    System("tmem-lz4", None, ""),
    System("redis", "redis-server", "redis-server"),
    System("memcached", "memcached", "memcached"),
)


def run(clients: int = 4, pages: int = 20_000, unbatched: int = 3_000,
        progress: bool = True) -> dict[str, Any]:
    """Run every system and workload; return one JSON-ready dict."""
    workdir = Path(tempfile.mkdtemp(prefix="tmem-bench-"))
    try:
        with status(progress, "bench server") as say:
            say("writing the page corpus")
            page_file = workdir / "pages.bin"
            with open(page_file, "wb") as f:
                f.writelines(corpus.pages(clients * pages))
            rows, missing = [], []
            for system in SYSTEMS:
                if system.binary and not shutil.which(system.binary):
                    missing.append(f"{system.name} (apt-get install "
                                   f"{system.package})")
                    continue
                for workload, count, batch in (("batched", pages, BATCH),
                                               ("unbatched", unbatched, 1)):
                    say(f"{system.name}, {workload}")
                    rows.append(_measure(system, workload, batch, clients,
                                         count, page_file, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result: dict[str, Any] = {"clients": clients, "pages_per_client": pages,
                              "unbatched_pages_per_client": unbatched,
                              "rows": rows, "missing": missing}
    result["targets"] = [t.as_dict() for t in _targets(rows)]
    return result


# -- one measurement ---------------------------------------------------------

def _measure(system: System, workload: str, batch: int, clients: int,
             count: int, page_file: Path, workdir: Path) -> dict[str, Any]:
    with _server(system, workdir) as (address, pid):
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(clients + 1)
        results = context.Queue()
        procs = [context.Process(target=_client, args=(
            system.name, address, n, count, batch, page_file, barrier,
            results)) for n in range(clients)]
        for proc in procs:
            proc.start()
        barrier.wait(60)            # everyone connected
        before = rss_of(pid)
        barrier.wait(600)           # puts done
        after = rss_of(pid)
        barrier.wait(60)            # go for gets
        times = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join(60)
    failed = [t["error"] for t in times if t["error"]]
    if failed:
        raise RuntimeError(f"{system.name} {workload}: {failed[0]}")
    total = clients * count
    put_s = max(t["put_end"] for t in times) - min(t["put_start"]
                                                   for t in times)
    get_s = max(t["get_end"] for t in times) - min(t["get_start"]
                                                   for t in times)
    return {"system": system.name, "workload": workload, "batch": batch,
            "pages": total, "put_per_s": total / put_s,
            "get_per_s": total / get_s,
            "bytes_per_page": (after - before) / total}


@contextmanager
def _server(system: System, workdir: Path) -> Iterator[tuple[str, int]]:
    sock = workdir / f"{system.name}.sock"
    sock.unlink(missing_ok=True)
    command, address = _command(system, sock)
    with server_process(command, sock, system.name) as proc:
        yield address, proc.pid


def _command(system: System, sock: Path) -> tuple[list[str], str]:
    if system.name.startswith("tmem"):
        codec = "lz4" if system.name == "tmem-lz4" else "none"
        return ([sys.executable, "-m", "tmem.cli", "serve", "--socket",
                 str(sock), "--capacity", "8GiB", "--compress", codec],
                f"unix:{sock}")
    if system.name == "redis":
        return (["redis-server", "--port", "0", "--unixsocket", str(sock),
                 "--save", "", "--appendonly", "no"], str(sock))
    command = ["memcached", "-s", str(sock), "-m", "8192", "-U", "0"]
    if os.getuid() == 0:
        command += ["-u", "root"]
    return command, f"unix:{sock}"


# -- a client process --------------------------------------------------------

def _client(system: str, address: str, n: int, count: int, batch: int,
            page_file: Path, barrier: Barrier, results: Any) -> None:
    times: dict[str, Any] = {"error": None}
    try:
        pages = _my_pages(page_file, n, count)
        put, get = _driver(system, address, n)
        barrier.wait(60)
        times["put_start"] = time.perf_counter()
        for start in range(0, count, batch):
            put(start, pages[start:start + batch])
        times["put_end"] = time.perf_counter()
        barrier.wait(600)
        barrier.wait(60)
        times["get_start"] = time.perf_counter()
        for start in range(0, count, batch):
            expected = pages[start:start + batch]
            if get(start, len(expected)) != expected:
                raise RuntimeError(f"client {n} read back wrong pages "
                                   f"at {start}")
        times["get_end"] = time.perf_counter()
    except BaseException as error:  # reported to the coordinator
        times["error"] = repr(error)
        barrier.abort()
    results.put(times)


def _my_pages(page_file: Path, n: int, count: int) -> list[bytes]:
    with open(page_file, "rb") as f:
        f.seek(n * count * 4096)
        data = f.read(count * 4096)
    return [data[i:i + 4096] for i in range(0, len(data), 4096)]


Put = Callable[[int, list[bytes]], None]
Get = Callable[[int, int], list[Any]]


def _driver(system: str, address: str, n: int) -> tuple[Put, Get]:
    if system.startswith("tmem"):
        return _tmem_driver(address, n)
    if system == "redis":
        return _redis_driver(address, n)
    return _memcached_driver(address, n)


def _tmem_driver(address: str, n: int) -> tuple[Put, Get]:
    import tmem

    pool = tmem.connect(address, name=f"bench-{n}").new_pool(
        persistent=True)

    def put(start: int, pages: list[bytes]) -> None:
        if len(pages) == 1:
            pool.put(1, start, pages[0])
        else:
            pool.put_many([(1, start + i, p) for i, p in enumerate(pages)])

    def get(start: int, count: int) -> list[Any]:
        if count == 1:
            return [pool.get(1, start)]
        return list(pool.get_many([(1, start + i) for i in range(count)]))

    return put, get


def _redis_driver(address: str, n: int) -> tuple[Put, Get]:
    import redis

    r = redis.Redis(unix_socket_path=address)

    def put(start: int, pages: list[bytes]) -> None:
        if len(pages) == 1:
            r.set(f"{n}:1:{start}", pages[0])
            return
        pipe = r.pipeline(transaction=False)
        for i, page in enumerate(pages):
            pipe.set(f"{n}:1:{start + i}", page)
        pipe.execute()

    def get(start: int, count: int) -> list[Any]:
        if count == 1:
            return [r.get(f"{n}:1:{start}")]
        pipe = r.pipeline(transaction=False)
        for i in range(count):
            pipe.get(f"{n}:1:{start + i}")
        return list(pipe.execute())

    return put, get


def _memcached_driver(address: str, n: int) -> tuple[Put, Get]:
    from pymemcache.client.base import Client

    mc = Client(address)

    def put(start: int, pages: list[bytes]) -> None:
        if len(pages) == 1:
            mc.set(f"{n}:1:{start}", pages[0], noreply=False)
            return
        mc.set_many({f"{n}:1:{start + i}": p for i, p in enumerate(pages)},
                    noreply=False)

    def get(start: int, count: int) -> list[Any]:
        keys = [f"{n}:1:{start + i}" for i in range(count)]
        if count == 1:
            return [mc.get(keys[0])]
        found = mc.get_many(keys)
        return [found.get(k) for k in keys]

    return put, get


# -- report ------------------------------------------------------------------

def _targets(rows: list[dict[str, Any]]) -> list[Target]:
    by = {(r["system"], r["workload"]): r for r in rows}
    tmem_row = by.get(("tmem", "batched"))
    targets: list[Target] = []
    if tmem_row is None:
        return targets
    for peer, factor in (("redis", 2.0), ("memcached", 1.2)):
        other = by.get((peer, "batched"))
        if other is None:
            continue
        for phase in ("put", "get"):
            ratio = tmem_row[f"{phase}_per_s"] / other[f"{phase}_per_s"]
            targets.append(Target(f"batched {phase}s/s tmem / {peer}",
                                  ratio, factor, True, "x"))
        targets.append(Target(
            f"bytes/page tmem / {peer}",
            tmem_row["bytes_per_page"] / other["bytes_per_page"], 1.0,
            False, "x"))
    return targets


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tmem.experiments.bench_engine import print_targets

    console = Console()
    table = Table(title=f"{result['clients']} client processes, 4 KiB real "
                  "pages, Unix sockets")
    for col in ("system", "workload", "pages", "put/s", "get/s",
                "bytes/page"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(r["system"], r["workload"], f"{r['pages']:,}",
                      f"{r['put_per_s']:,.0f}", f"{r['get_per_s']:,.0f}",
                      f"{r['bytes_per_page']:,.0f}")
    console.print(table)
    for name in result["missing"]:
        console.print(f"not measured: {name}")
    print_targets(console, result["targets"])
