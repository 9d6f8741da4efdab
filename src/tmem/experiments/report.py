"""What a comparison showed: the numbers, the table, results.json, a plot.

Rules:
- Every figure comes from the two runs' counters (the guests') and the
  daemon's final snapshot; nothing is estimated.
- "Reads saved" is 1 - (sectors read with tmem / sectors read static),
  over all guests; negative means tmem made it worse, and says so.
- The frontswap hit ratio is swap-ins served by the pool over all
  swap-ins; the cleancache hit ratio is hits over gets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tmem.engine.handles import format_size
from tmem.experiments.runner import RunResult
from tmem.experiments.scenario import Scenario


def summarize(scenario: Scenario, static: RunResult,
              pooled: RunResult) -> dict[str, Any]:
    """The comparison as one JSON-ready dict."""
    guests = [_guest(plan.name, plan.label, s, t, pooled)
              for plan, s, t in zip(scenario.guests, static.guests,
                                    pooled.guests, strict=True)]
    read_static = sum(g["sectors_read"]["static"] for g in guests)
    read_tmem = sum(g["sectors_read"]["tmem"] for g in guests)
    host = pooled.host or {}
    content_bytes = _payload(host)
    return {
        "scenario": scenario.name,
        "guests": guests,
        "total": {
            key: {"static": sum(g[key]["static"] for g in guests),
                  "tmem": sum(g[key]["tmem"] for g in guests)}
            for key in ("sectors_read", "sectors_written", "swap_io",
                        "cpu_s")},
        "reads_saved": 1 - read_tmem / read_static if read_static else 0.0,
        "wall_s": {"static": static.seconds, "tmem": pooled.seconds},
        "daemon_cpu_s": pooled.daemon_cpu_s,
        "pool": {
            "capacity": scenario.pool_bytes(),
            "compress": scenario.compress,
            "compression_ratio": _ratio(host),
            "payload_bytes": content_bytes,
            "dedup_saved_bytes": host.get("dedup_saved_bytes", 0),
            "evictions": host.get("ephemeral_content", {}).get(
                "evictions", 0),
            "peak_used": host.get("used_peak", 0),
        },
    }


def _guest(name: str, label: str, static: dict[str, Any],
           pooled: dict[str, Any], run: RunResult) -> dict[str, Any]:
    s, t = static["counters"], pooled["counters"]

    def both(key: str) -> dict[str, Any]:
        return {"static": s[key], "tmem": t[key]}

    swapins = t["frontswap_loads"] + t["swap_reads"]
    peak = max((sample.pages.get(name, 0) for sample in run.samples),
               default=0)
    return {
        "name": name, "workload": label,
        "frames": both("frames"),
        "sectors_read": both("disk_sectors_read"),
        "sectors_written": both("disk_sectors_written"),
        "swap_io": {"static": s["swap_reads"] + s["swap_writes"],
                    "tmem": t["swap_reads"] + t["swap_writes"]},
        "cleancache_hit_ratio": (t["cleancache_hits"] / t["cleancache_gets"]
                                 if t["cleancache_gets"] else None),
        "frontswap_hit_ratio": (t["frontswap_loads"] / swapins
                                if swapins else None),
        "tmem_pages_peak": peak,
        "cpu_s": both("cpu_s"), "wall_s": both("wall_s"),
        "stale_pages": t["stale_pages"],
    }


def _payload(host: dict[str, Any]) -> int:
    total = 0
    for kind in ("ephemeral_content", "persistent_content"):
        c = host.get(kind, {})
        total += c.get("raw_pages", 0) * 4096 + c.get("compressed_bytes", 0)
    return total


def _ratio(host: dict[str, Any]) -> float:
    pages = sum(host.get(k, {}).get("pages", 0)
                for k in ("ephemeral_content", "persistent_content"))
    payload = _payload(host) - host.get("dedup_saved_bytes", 0)
    return pages * 4096 / payload if payload > 0 else 1.0


def write_results(folder: Path, scenario: Scenario, static: RunResult,
                  pooled: RunResult, summary: dict[str, Any]) -> Path:
    """results.json: the scenario, both runs in full, and the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    document = {"scenario": scenario.to_dict(), "summary": summary,
                "runs": {run.mode: _run_dict(run)
                         for run in (static, pooled)}}
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    return path


def _run_dict(run: RunResult) -> dict[str, Any]:
    return {"seconds": run.seconds, "guests": run.guests,
            "host": run.host, "daemon_cpu_s": run.daemon_cpu_s,
            "samples": [vars(s) for s in run.samples]}


def plot(folder: Path, summary: dict[str, Any], pooled: RunResult) -> Path:
    """plot.png: pool occupancy per guest over time, and reads saved."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8))
    names = [g["name"] for g in summary["guests"]]
    times = [s.seconds for s in pooled.samples]
    stacks = [[s.pages.get(n, 0) for s in pooled.samples] for n in names]
    if times:
        top.stackplot(times, stacks, labels=names, alpha=0.85)
    top.set_title("pages each guest holds in the tmem pool")
    top.set_xlabel("seconds into the tmem run")
    top.set_ylabel("pages in tmem")
    top.legend(loc="upper left", fontsize="small")

    static = [g["sectors_read"]["static"] for g in summary["guests"]]
    pooled_reads = [g["sectors_read"]["tmem"] for g in summary["guests"]]
    x = range(len(names))
    bottom.bar([i - 0.2 for i in x], static, 0.4, label="static split")
    bottom.bar([i + 0.2 for i in x], pooled_reads, 0.4, label="with tmem")
    bottom.set_xticks(list(x), names, fontsize="small")
    bottom.set_ylabel("disk sectors read")
    saved = summary["reads_saved"]
    bottom.set_title(f"disk reads: {_saved_words(saved)} in total")
    bottom.legend()
    figure.tight_layout()
    path = folder / "plot.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _saved_words(saved: float) -> str:
    if saved >= 0:
        return f"{100 * saved:.1f}% fewer sectors read with tmem"
    return f"{-100 * saved:.1f}% MORE sectors read with tmem"


def render(summary: dict[str, Any]) -> None:
    """The final tables, per guest and in total (80 columns)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    disk = Table(title=f"{summary['scenario']}: static split vs tmem")
    for col in ("guest", "RAM", "read static", "read tmem", "saved",
                "written", "swap I/O"):
        disk.add_column(col, justify="right")
    for g in summary["guests"]:
        disk.add_row(g["name"], _pair(g["frames"]),
                     f"{g['sectors_read']['static']:,}",
                     f"{g['sectors_read']['tmem']:,}",
                     _pct(_saving(g["sectors_read"])),
                     _pair(g["sectors_written"]), _pair(g["swap_io"]))
    total = summary["total"]
    disk.add_row("total", "", f"{total['sectors_read']['static']:,}",
                 f"{total['sectors_read']['tmem']:,}",
                 _pct(summary["reads_saved"]),
                 _pair(total["sectors_written"]), _pair(total["swap_io"]),
                 style="bold")
    console.print(disk)
    console.print("RAM in 4 KiB frames and disk I/O in 512-byte sectors "
                  "(swap I/O in pages), as static / with tmem")

    pool = Table(title="the pool, with tmem")
    for col in ("guest", "cleancache hits", "frontswap hits",
                "pages in tmem (peak)", "wall s", "CPU s"):
        pool.add_column(col, justify="right")
    for g in summary["guests"]:
        pool.add_row(g["name"], _pct(g["cleancache_hit_ratio"]),
                     _pct(g["frontswap_hit_ratio"]),
                     f"{g['tmem_pages_peak']:,}",
                     _pair(g["wall_s"], ".1f"), _pair(g["cpu_s"], ".1f"))
    console.print(pool)
    _footer(console, summary)


def _footer(console: Any, summary: dict[str, Any]) -> None:
    pool, cpu = summary["pool"], summary["total"]["cpu_s"]
    console.print(
        f"pool: {format_size(pool['capacity'])}, {pool['compress']} "
        f"compression ratio {pool['compression_ratio']:.2f}, dedup saved "
        f"{format_size(pool['dedup_saved_bytes'])}, "
        f"{pool['evictions']:,} evictions")
    daemon_cpu = summary["daemon_cpu_s"]
    in_daemon = ("the daemon's not measured (--connect)" if daemon_cpu is None
                 else f"plus {daemon_cpu:.1f} s in the daemon")
    console.print(
        f"CPU: guests {cpu['static']:.1f} s static, {cpu['tmem']:.1f} s "
        f"with tmem, {in_daemon}; wall {summary['wall_s']['static']:.1f} s "
        f"vs {summary['wall_s']['tmem']:.1f} s")
    console.print(f"[bold]disk reads: "
                  f"{_saved_words(summary['reads_saved'])}[/bold]")


def _saving(pair: dict[str, int]) -> float | None:
    return 1 - pair["tmem"] / pair["static"] if pair["static"] else None


def _pair(pair: dict[str, Any], fmt: str = ",") -> str:
    return f"{pair['static']:{fmt}} / {pair['tmem']:{fmt}}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
