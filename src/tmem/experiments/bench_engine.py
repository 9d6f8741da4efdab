"""`tmem bench engine`: the embedded engine on real pages, one core.

What it measures, on pages of this machine's own files (corpus.py):
- put and get pages/s into a persistent pool with compression off, lz4 and
  zstd, one call per page and in batches of 32;
- the bare codec cost (compress and decompress the same pages in the same
  loop shape, no engine) so the engine's own overhead shows as a ratio;
- host bytes per stored page (RSS growth in a fresh process over all the
  pages) against the payload the engine keeps, raw, lz4 and zstd, persistent and
  ephemeral;
- what compression, same-filled detection and dedup save on these pages.

Targets: >= 400k gets/s and >= 250k puts/s uncompressed; lz4 put and get
within 1.3x of bare lz4; bytes per page <= 1.08 x payload + 64.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import lz4.block
import zstandard

import tmem
from tmem import corpus
from tmem.experiments.measure import (
    Target,
    best_time,
    pin_to_one_core,
    rss_bytes,
    status,
)

BATCH = 32
CODECS = ("none", "lz4", "zstd")


def run(pages: int = 100_000, repeats: int = 3,
        progress: bool = True) -> dict[str, Any]:
    """Run every measurement; return the results as one JSON-ready dict."""
    cpu = pin_to_one_core()
    with status(progress, "bench engine") as step:
        step("loading real pages")
        data = corpus.pages(pages)
        info = corpus.info()
        handles = [(i >> 6, i & 63) for i in range(len(data))]

        rows, stats = [], {}
        for codec in CODECS:
            step(f"put/get, compress={codec}")
            row, stats[codec] = _throughput(codec, data, handles, repeats)
            rows.append(row)
        step("bare codecs")
        bare = _bare_codecs(data, repeats)
        step("dedup")
        dedup_saved = _dedup_saving(data)
        memory = []
        for codec in ("none", "lz4", "zstd"):
            for kind in ("persistent", "ephemeral"):
                step(f"memory, compress={codec}, {kind}")
                memory.append(_memory_probe(codec, kind, len(data)))

    result = {
        "pages": len(data), "cpu": cpu,
        "corpus": {"text_files": info.text_files,
                   "binary_files": info.binary_files},
        "throughput": rows, "bare": bare, "memory": memory,
        "savings": _savings(stats, dedup_saved, len(data)),
    }
    result["targets"] = [t.as_dict() for t in _targets(result)]
    return result


def _throughput(codec: str, data: list[bytes],
                handles: list[tuple[int, int]],
                repeats: int) -> tuple[dict[str, Any], tmem.HostStats]:
    box: dict[str, tmem.Pool] = {}

    def fresh() -> None:
        host = tmem.Host(capacity="8GiB", compress=codec)
        box["pool"] = host.client("bench").new_pool(persistent=True)

    def put_each() -> None:
        put = box["pool"].put
        for (oid, index), page in zip(handles, data, strict=True):
            put(oid, index, page)

    def get_each() -> None:
        get = box["pool"].get
        for oid, index in handles:
            get(oid, index)

    batches = [[(o, i, p) for (o, i), p in zip(
        handles[n:n + BATCH], data[n:n + BATCH], strict=True)]
        for n in range(0, len(data), BATCH)]
    keys = [[(o, i) for o, i, _ in batch] for batch in batches]

    def put_batched() -> None:
        put_many = box["pool"].put_many
        for batch in batches:
            put_many(batch)

    def get_batched() -> None:
        get_many = box["pool"].get_many
        for batch in keys:
            get_many(batch)

    n = len(data)
    put_s = best_time(put_each, repeats, setup=fresh)
    get_s = best_time(get_each, repeats)
    put_b = best_time(put_batched, repeats, setup=fresh)
    get_b = best_time(get_batched, repeats)
    stats = box["pool"].client.host.stats()
    return {
        "compress": codec,
        "put_per_s": n / put_s, "get_per_s": n / get_s,
        "put_ns": put_s / n * 1e9, "get_ns": get_s / n * 1e9,
        "put_batch_per_s": n / put_b, "get_batch_per_s": n / get_b,
        "put_batch_ns": put_b / n * 1e9, "get_batch_ns": get_b / n * 1e9,
    }, stats


def _bare_codecs(data: list[bytes], repeats: int) -> dict[str, Any]:
    """The same loops with only the codec call: the cost to stay near."""
    return {
        "lz4": _bare(lz4.block.compress, lz4.block.decompress, data,
                     repeats),
        "zstd": _bare(zstandard.ZstdCompressor(level=1).compress,
                      zstandard.ZstdDecompressor().decompress, data,
                      repeats),
    }


def _bare(compress: Callable[[bytes], bytes],
          decompress: Callable[[bytes], bytes], data: list[bytes],
          repeats: int) -> dict[str, float]:
    kept: list[bytes] = []

    def compress_all() -> None:
        kept.clear()
        append = kept.append
        for page in data:
            append(compress(page))

    def decompress_all() -> None:
        for payload in kept:
            decompress(payload)

    c = best_time(compress_all, repeats)
    d = best_time(decompress_all, repeats)
    return {"compress_ns": c / len(data) * 1e9,
            "decompress_ns": d / len(data) * 1e9}


def _dedup_saving(data: list[bytes]) -> int:
    host = tmem.Host(capacity="8GiB", compress="lz4", dedup=True)
    pool = host.client("dedup").new_pool()
    for i, page in enumerate(data):
        pool.put(i >> 6, i & 63, page)
    return host.stats().dedup_saved_bytes


def _savings(stats: dict[str, tmem.HostStats], dedup_saved: int,
             pages: int) -> dict[str, Any]:
    logical = pages * 4096
    result: dict[str, Any] = {"logical_bytes": logical}
    for codec, s in stats.items():
        content = s.persistent_content
        payload = content.raw_pages * 4096 + content.compressed_bytes
        result[codec] = {
            "payload_bytes": payload,
            "ratio": logical / payload if payload else 0.0,
            "compressed_pages": content.compressed_pages,
            "poor_pages": s.persistent_ops.compress_poor,
            "same_filled_pages": content.same_filled_pages,
            "zero_pages": content.zero_pages,
        }
    result["dedup_saved_bytes_lz4"] = dedup_saved
    return result


def _memory_probe(codec: str, kind: str, pages: int) -> dict[str, Any]:
    """RSS per stored page, measured in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-m", "tmem.experiments.bench_engine", "--probe",
         codec, kind, str(pages)],
        check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout))


def probe(codec: str, kind: str, pages: int) -> dict[str, Any]:
    """Store `pages` fresh copies of real pages; report RSS growth."""
    data = corpus.pages(pages)
    host = tmem.Host(capacity="8GiB", compress=codec)
    pool = host.client("probe").new_pool(persistent=kind == "persistent")
    before = rss_bytes()
    for i, page in enumerate(data):
        # a fresh copy, as a page read off a socket would be
        pool.put(i >> 6, i & 63, bytes(memoryview(page)))
    grown = rss_bytes() - before
    content = pool.stats().content
    payload = content.raw_pages * 4096 + content.compressed_bytes
    return {
        "compress": codec, "kind": kind, "pages": content.pages,
        "payload_per_page": payload / content.pages,
        "rss_per_page": grown / content.pages,
        "accounted_per_page": content.bytes / content.pages,
    }


def _targets(result: dict[str, Any]) -> list[Target]:
    by_codec = {r["compress"]: r for r in result["throughput"]}
    none, lz4_row = by_codec["none"], by_codec["lz4"]
    bare = result["bare"]["lz4"]
    targets = [
        Target("gets/s, no compression", none["get_per_s"], 400_000, True),
        Target("puts/s, no compression", none["put_per_s"], 250_000, True),
        Target("lz4 put / bare compress", lz4_row["put_ns"]
               / bare["compress_ns"], 1.3, False, "x"),
        Target("lz4 get / bare decompress", lz4_row["get_ns"]
               / bare["decompress_ns"], 1.3, False, "x"),
    ]
    for m in result["memory"]:
        limit = 1.08 * m["payload_per_page"] + 64
        targets.append(Target(
            f"bytes/page, {m['compress']}, {m['kind']}",
            m["rss_per_page"], limit, False, "B"))
    return targets


def render(result: dict[str, Any]) -> None:
    """Print the result as tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"engine throughput, {result['pages']:,} real pages,"
                  f" one core (cpu {result['cpu']})")
    for col in ("compress", "put/s", "get/s", "put/s batch 32",
                "get/s batch 32", "put ns", "get ns"):
        table.add_column(col, justify="right")
    for r in result["throughput"]:
        table.add_row(r["compress"], f"{r['put_per_s']:,.0f}",
                      f"{r['get_per_s']:,.0f}",
                      f"{r['put_batch_per_s']:,.0f}",
                      f"{r['get_batch_per_s']:,.0f}",
                      f"{r['put_ns']:,.0f}", f"{r['get_ns']:,.0f}")
    for name, b in result["bare"].items():
        table.add_row(f"bare {name}", "", "", "", "",
                      f"{b['compress_ns']:,.0f}",
                      f"{b['decompress_ns']:,.0f}")
    console.print(table)

    mem = Table(title="host bytes per stored page (RSS growth)")
    for col in ("compress", "pool", "payload B", "RSS B", "accounted B"):
        mem.add_column(col, justify="right")
    for m in result["memory"]:
        mem.add_row(m["compress"], m["kind"],
                    f"{m['payload_per_page']:,.0f}",
                    f"{m['rss_per_page']:,.0f}",
                    f"{m['accounted_per_page']:,.0f}")
    console.print(mem)

    savings = result["savings"]
    save = Table(title="what each mechanism saves on these pages")
    for col in ("compress", "payload MiB", "ratio", "poor (raw)",
                "same-filled", "zero"):
        save.add_column(col, justify="right")
    for codec in CODECS:
        s = savings[codec]
        save.add_row(codec, f"{s['payload_bytes'] / 2**20:,.1f}",
                     f"{s['ratio']:.2f}", f"{s['poor_pages']:,}",
                     f"{s['same_filled_pages']:,}", f"{s['zero_pages']:,}")
    console.print(save)
    console.print(f"dedup (lz4, ephemeral) saved "
                  f"{savings['dedup_saved_bytes_lz4'] / 2**20:,.2f} MiB of "
                  f"{savings['logical_bytes'] / 2**20:,.0f} MiB")
    print_targets(console, result["targets"])


def print_targets(console: Any, targets: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="targets")
    for col in ("target", "measured", "limit", "met"):
        table.add_column(col, justify="right")
    for t in targets:
        op = ">=" if t["higher_is_better"] else "<="
        table.add_row(t["name"], f"{t['measured']:,.2f}{t['unit']}",
                      f"{op} {t['limit']:,.2f}{t['unit']}",
                      "yes" if t["met"] else "NO")
    console.print(table)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        codec, kind, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(probe(codec, kind, count)))
