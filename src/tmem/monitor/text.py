"""Plain-text rendering of snapshots: numbers, sizes, and `tmem list`.

Rules:
- Everything here is a pure function of a snapshot; nothing reads a clock
  or talks to a host.
- Table cells use compact forms that never exceed their width (`count`
  and `size` fit in 4 columns, `rate` in 5), so a table keeps its layout
  at any scale.  Exact values are in the long form, the JSON and the
  metrics.
- The long form prints every counter under the engine's own field names
  (the glossary), so a counter added to the engine shows up here without
  a change.
- Lines stay within `width` columns (80 by default); long groups of
  counters wrap with an indent.
"""

from __future__ import annotations

import dataclasses

from tmem.engine.handles import format_size
from tmem.engine.stats import (
    ClientStats,
    HostStats,
    OpCounts,
    PoolStats,
    Snapshot,
)

WIDTH = 80
_SUFFIXES = ("k", "M", "G", "T", "P")


def count(value: float) -> str:
    """A non-negative number in at most 4 columns: 999, 1.2k, 12k, 123k."""
    if value < 1000:
        return str(int(value))
    for suffix in _SUFFIXES:
        value /= 1000
        if value < 9.95:
            return f"{value:.1f}{suffix}"
        if value < 999.5:
            return f"{value:.0f}{suffix}"
    return "huge"


def size(nbytes: int | None) -> str:
    """Bytes in at most 4 columns with binary units: 512M, 1.5G; '-' for
    None."""
    if nbytes is None:
        return "-"
    value = float(nbytes)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if value < 9.95 and unit != "B":
            return f"{value:.1f}{unit}"
        if value < 999.5:
            return f"{value:.0f}{unit}"
        value /= 1024
    return "huge"


def rate(per_second: float | None) -> str:
    """A rate in at most 5 columns; '-' when unknown."""
    if per_second is None:
        return "-"
    if per_second < 9.95:
        return f"{per_second:.1f}"
    return count(per_second)


def percent(part: int, whole: int) -> str:
    """part/whole as a whole percentage; '-' when whole is 0."""
    if whole <= 0:
        return "-"
    return f"{100 * part // whole}%"


def wrap(title: str, items: list[str], width: int = WIDTH,
         indent: int = 2, sep: str = " ") -> list[str]:
    """`title: item<sep>item...` in lines of at most `width` columns.

    Items are never split (one longer than a line overflows it); lines
    after the first are indented 4 more than the title.
    """
    lines: list[str] = []
    line = " " * indent + f"{title}:"
    tail = sep.rstrip()  # stays on the line before a break
    for number, item in enumerate(items):
        piece = item if number == len(items) - 1 else item + tail
        if number and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line = " " * (indent + 3)
        line += " " + piece
    lines.append(line)
    return lines


def counter_lines(title: str, stats: object, width: int = WIDTH,
                  indent: int = 2) -> list[str]:
    """Every field of a stats dataclass as `name=value`, wrapped.

    Scalar fields come first under `title`; each nested dataclass (the
    OpCounts and PageCounts inside) follows as its own group, titled with
    its field name.
    """
    scalars: list[str] = []
    groups: list[tuple[str, object]] = []
    for f in dataclasses.fields(stats):  # type: ignore[arg-type]
        value = getattr(stats, f.name)
        if dataclasses.is_dataclass(value):
            groups.append((f.name, value))
        else:
            scalars.append(f"{f.name}={_plain(value)}")
    lines = wrap(title, scalars, width, indent)
    for name, group in groups:
        lines += counter_lines(name, group, width, indent + 2)
    return lines


def _plain(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def pool_kind(pool: PoolStats) -> str:
    """'ephemeral', 'persistent' or 'shared ephemeral'."""
    kind = "persistent" if pool.persistent else "ephemeral"
    return f"shared {kind}" if pool.shared else kind


# -- tmem list ----------------------------------------------------------------


def host_summary(host: HostStats, width: int = WIDTH) -> list[str]:
    """The host in a few lines: memory, pages by kind, operations."""
    eph, pers = host.ephemeral_content, host.persistent_content
    both = eph + pers
    ops = host.ops
    memory = [
        f"capacity {format_size(host.capacity)}",
        f"used {format_size(host.used)}",
        f"peak {format_size(host.used_peak)}",
        f"freeable {format_size(host.freeable)}",
        f"clients {host.clients}", f"pools {host.pools}",
        f"shared pools {host.shared_pools}", f"compress {host.compress}",
        f"dedup {'on' if host.dedup else 'off'}",
    ]
    pages = [
        f"ephemeral {eph.pages}", f"persistent {pers.pages}",
        f"raw {both.raw_pages}", f"compressed {both.compressed_pages}",
        f"same-filled {both.same_filled_pages}", f"zero {both.zero_pages}",
        f"dedup saved {format_size(host.dedup_saved_bytes)}",
        f"compression ratio {host.compression_ratio:.2f}",
    ]
    activity = [
        f"puts {ops.puts}", f"stored {ops.puts_stored}",
        f"refused {refused(ops)}",
        f"gets {ops.gets}", f"found {ops.gets_found}",
        f"evictions {eph.evictions}",
    ]
    return (wrap("host", memory, width, 0, ", ")
            + wrap("pages", pages, width, 2, ", ")
            + wrap("ops", activity, width, 2, ", "))


def refused(ops: OpCounts) -> int:
    """Puts refused for any reason (full, cap or frozen)."""
    return ops.refused_full + ops.refused_cap + ops.refused_frozen


def client_summary(client: ClientStats, width: int = WIDTH) -> list[str]:
    """One client: settings, pages billed, and its main outcomes."""
    ops = client.ops
    used = client.ephemeral_bytes + client.persistent_bytes
    words = [
        f"weight {client.weight}",
        f"cap {'none' if client.cap is None else format_size(client.cap)}",
        f"frozen {'yes' if client.frozen else 'no'}",
        f"compress {client.compress}",
        f"ephemeral pages {client.ephemeral_pages}",
        f"persistent pages {client.persistent_pages}",
        f"used {format_size(used)}",
        f"ephemeral gets found {client.ephemeral_ops.gets_found}",
        f"persistent puts stored {client.persistent_ops.puts_stored}",
        f"persistent gets found {client.persistent_ops.gets_found}",
        f"refused puts {refused(ops)}", f"evictions {client.evictions}",
    ]
    if not client.connected:
        words.append("session waiting to resume")
    return wrap(f"client {client.client_id} {client.name!r}", words, width,
                0, ", ")


def pool_summary(pool: PoolStats, width: int = WIDTH) -> list[str]:
    """One pool as its client sees it."""
    words = [pool_kind(pool), f"pages {pool.content.pages}",
             f"objects {pool.objects}", f"peak {pool.pages_peak}",
             f"puts {pool.ops.puts}", f"gets {pool.ops.gets}"]
    if pool.shared:
        words += [f"uuid {pool.uuid}", f"sharers {pool.sharers}"]
    return wrap(f"pool {pool.pool_id}", words, width, 2, ", ")


def render_list(snap: Snapshot, long: bool = False,
                width: int = WIDTH) -> list[str]:
    """`tmem list`: host, then each client followed by its pools.

    With `long`, every counter follows each summary.
    """
    lines = host_summary(snap.host, width)
    if long:
        lines += counter_lines("all host counters", snap.host, width, 2)
    for client in snap.clients:
        lines += client_summary(client, width)
        if long:
            lines += counter_lines("all client counters", client, width, 2)
        for pool in pools_of(snap, client.client_id):
            lines += pool_summary(pool, width)
            if long:
                lines += counter_lines("all pool counters", pool, width, 4)
    return lines


def pools_of(snap: Snapshot, client_id: int) -> list[PoolStats]:
    """The client's pools, by pool id."""
    return sorted((p for p in snap.pools if p.client_id == client_id),
                  key=lambda p: p.pool_id)
