"""What `tmem top` shows: rates, the client table, sorting, selection.

Both faces of `tmem top` draw from one `TopView`: the Textual app styles
its lines, batch mode prints them as they are.  Nothing here knows about
terminals, threads or the daemon.

Rules:
- A rate is the difference of a counter between two consecutive
  snapshots divided by the difference of their `taken_at` (the host's
  clock, injected into the host).  There is no rate before the second
  snapshot, none when the clock did not advance, and none when a counter
  went backwards (a restarted daemon): those show as '-'.
- A client's rates compare it with the same client id and name in the
  previous snapshot; a new client has none yet.
- A lost connection keeps the last snapshot on screen, marked
  disconnected, without rates (they would describe a daemon that is not
  answering); the first snapshot after it has none either.
- Every line fits in 80 columns (text.WIDTH): the table's cells have fixed
  widths and compact numbers (see text.py).
- Numeric columns sort largest first, ID and NAME smallest first; ties
  keep client-id order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tmem.engine.handles import format_size
from tmem.engine.stats import ClientStats, HostStats, Snapshot
from tmem.monitor import text
from tmem.monitor.text import count, rate, size


def per_second(before: int, after: int, seconds: float | None
               ) -> float | None:
    """(after - before) / seconds, or None when that means nothing."""
    if seconds is None or seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


def elapsed(previous: Snapshot | None, current: Snapshot) -> float | None:
    """Seconds between two snapshots by the host's clock."""
    if previous is None:
        return None
    return current.host.taken_at - previous.host.taken_at


@dataclass(frozen=True)
class Row:
    """One client in the table, with its rates."""

    client: ClientStats
    put_rate: float | None = None
    get_rate: float | None = None

    @property
    def hit_ratio(self) -> float | None:
        """Gets that found their page, over all gets."""
        ops = self.client.ops
        return ops.gets_found / ops.gets if ops.gets else None


def _state(client: ClientStats) -> str:
    return ("F" if client.frozen else "") + ("" if client.connected else "D")


def _hit(row: Row) -> str:
    ratio = row.hit_ratio
    return "-" if ratio is None else f"{int(100 * ratio)}%"


SortKey = float | str


@dataclass(frozen=True)
class Column:
    """A table column: its title, width, cell text and sort key."""

    title: str
    width: int
    cell: Callable[[Row], str]
    key: Callable[[Row], SortKey]
    left: bool = False
    largest_first: bool = True

    def format(self, value: str) -> str:
        value = value[:self.width]
        return value.ljust(self.width) if self.left \
            else value.rjust(self.width)


def _known(value: float | None) -> float:
    return -1.0 if value is None else value


_INFINITE = float("inf")

COLUMNS: tuple[Column, ...] = (
    Column("ID", 3, lambda r: str(r.client.client_id),
           lambda r: r.client.client_id, largest_first=False),
    Column("NAME", 8, lambda r: r.client.name, lambda r: r.client.name,
           left=True, largest_first=False),
    Column("WGT", 4, lambda r: count(r.client.weight),
           lambda r: r.client.weight),
    Column("CAP", 4, lambda r: size(r.client.cap),
           lambda r: _INFINITE if r.client.cap is None else r.client.cap),
    Column("ST", 2, lambda r: _state(r.client), lambda r: _state(r.client),
           left=True),
    Column("EPH", 4, lambda r: count(r.client.ephemeral_pages),
           lambda r: r.client.ephemeral_pages),
    Column("PERS", 4, lambda r: count(r.client.persistent_pages),
           lambda r: r.client.persistent_pages),
    Column("EHIT", 4,
           lambda r: count(r.client.ephemeral_ops.gets_found),
           lambda r: r.client.ephemeral_ops.gets_found),
    Column("PPUT", 4,
           lambda r: count(r.client.persistent_ops.puts_stored),
           lambda r: r.client.persistent_ops.puts_stored),
    Column("PHIT", 4,
           lambda r: count(r.client.persistent_ops.gets_found),
           lambda r: r.client.persistent_ops.gets_found),
    Column("REF", 4, lambda r: count(text.refused(r.client.ops)),
           lambda r: text.refused(r.client.ops)),
    Column("EVIC", 4, lambda r: count(r.client.evictions),
           lambda r: r.client.evictions),
    Column("HIT%", 4, _hit, lambda r: _known(r.hit_ratio)),
    Column("PUT/s", 5, lambda r: rate(r.put_rate),
           lambda r: _known(r.put_rate)),
    Column("GET/s", 5, lambda r: rate(r.get_rate),
           lambda r: _known(r.get_rate)),
)
"""The table, left to right.  EHIT: ephemeral gets that found their page;
PPUT: persistent puts stored; PHIT: persistent gets that found their page;
REF: puts refused (full, cap or frozen); ST: F frozen, D session waiting
to resume."""


@dataclass(frozen=True)
class Line:
    """A line of the table; `client_id` names the client it belongs to."""

    text: str
    client_id: int | None = None
    is_row: bool = False


class TopView:
    """The state of one `tmem top`: snapshots, sort order, selection.

    Args:
        interval: seconds between refreshes, shown in the header.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.previous: Snapshot | None = None
        self.current: Snapshot | None = None
        self.connected = False
        self.problem = ""
        """Why the last refresh failed, while disconnected."""
        self.sort_index = 0
        self.details = False
        self.selected: int | None = None
        """The selected client's id."""

    # -- input ----------------------------------------------------------------

    def update(self, snap: Snapshot) -> None:
        """Show a new snapshot; the one shown so far becomes the base for
        rates."""
        base = self.current if self.connected else None
        self.previous, self.current = base, snap
        self.connected = True
        self.problem = ""

    def lost(self, error: Exception) -> None:
        """Mark the view disconnected; the last snapshot stays, its rates
        go."""
        self.previous = None
        self.connected = False
        self.problem = str(error)

    def cycle_sort(self) -> Column:
        """Sort by the next column (wrapping round); return it."""
        self.sort_index = (self.sort_index + 1) % len(COLUMNS)
        return COLUMNS[self.sort_index]

    def toggle_details(self) -> None:
        self.details = not self.details

    def move(self, step: int) -> None:
        """Select the client `step` rows below (negative: above)."""
        rows = self.rows()
        if not rows:
            return
        ids = [r.client.client_id for r in rows]
        chosen = self.selected_id(rows)
        assert chosen is not None
        here = ids.index(chosen)
        self.selected = ids[max(0, min(len(ids) - 1, here + step))]

    # -- derived --------------------------------------------------------------

    @property
    def sort_column(self) -> Column:
        return COLUMNS[self.sort_index]

    def rows(self) -> list[Row]:
        """The clients of the current snapshot, sorted."""
        if self.current is None:
            return []
        seconds = elapsed(self.previous, self.current)
        before = {} if self.previous is None else {
            c.client_id: c for c in self.previous.clients}
        rows = [_row(c, before.get(c.client_id), seconds)
                for c in sorted(self.current.clients,
                                key=lambda c: c.client_id)]
        column = self.sort_column
        return sorted(rows, key=column.key, reverse=column.largest_first)

    def selected_id(self, rows: list[Row]) -> int | None:
        """The selected client's id, or the first row's if the selected
        client is gone (or none was selected)."""
        ids = [r.client.client_id for r in rows]
        if self.selected in ids:
            return self.selected
        return ids[0] if ids else None

    def selected_client(self) -> ClientStats | None:
        rows = self.rows()
        chosen = self.selected_id(rows)
        for row in rows:
            if row.client.client_id == chosen:
                return row.client
        return None

    # -- rendering ------------------------------------------------------------

    def header(self) -> list[str]:
        """The summary above the table: status, memory, pages, rates."""
        lines = self._status()
        snap = self.current
        if snap is None:
            return lines
        host = snap.host
        return [*lines, _memory(host), _pages(host), _stored(host),
                _rates(self.previous, snap)]

    def _status(self) -> list[str]:
        if not self.connected:
            if self.current is None and not self.problem:
                return ["tmem top: connecting"]
            return [f"tmem top: disconnected, retrying every "
                    f"{self.interval:g}s",
                    *text.wrap("last error", self.problem.split())]
        assert self.current is not None
        host = self.current.host
        return [f"tmem top: connected, {count(host.clients)} clients, "
                f"{count(host.pools)} pools ({host.shared_pools} shared), "
                f"sorted by {self.sort_column.title}"]

    def title(self) -> str:
        """The column titles, aligned like the rows."""
        return " ".join(c.format(c.title) for c in COLUMNS)

    def title_span(self, index: int) -> tuple[int, int]:
        """The columns [start, end) of column `index` in the title."""
        start = sum(c.width + 1 for c in COLUMNS[:index])
        return start, start + COLUMNS[index].width

    def table(self) -> list[Line]:
        """One line per client, each followed by its detail lines when
        details are on."""
        lines = [Line(self.title())]
        for row in self.rows():
            client = row.client
            cells = " ".join(c.format(c.cell(row)) for c in COLUMNS)
            lines.append(Line(cells, client.client_id, is_row=True))
            if self.details:
                lines += [Line(t, client.client_id)
                          for t in self._details(client)]
        return lines

    def _details(self, client: ClientStats) -> list[str]:
        assert self.current is not None
        # one column less: room for the screen's scroll bar
        width = text.WIDTH - 1
        lines = text.counter_lines(f"client {client.client_id}", client,
                                   width, indent=4)
        for pool in text.pools_of(self.current, client.client_id):
            title = f"pool {pool.pool_id} {text.pool_kind(pool)}"
            lines += text.counter_lines(title, pool, width, indent=6)
        return lines

    def render(self) -> str:
        """Header, a blank line and the table, as plain text."""
        lines = [*self.header(), "", *(line.text for line in self.table())]
        return "\n".join(lines)


def _row(client: ClientStats, before: ClientStats | None,
         seconds: float | None) -> Row:
    if before is None or before.name != client.name:
        return Row(client)
    return Row(client,
               per_second(before.ops.puts, client.ops.puts, seconds),
               per_second(before.ops.gets, client.ops.gets, seconds))


def _memory(host: HostStats) -> str:
    used = text.percent(host.used, host.capacity)
    return (f"memory: capacity {format_size(host.capacity)}, used "
            f"{format_size(host.used)} ({used}), freeable "
            f"{format_size(host.freeable)}")


def _pages(host: HostStats) -> str:
    eph, pers = host.ephemeral_content, host.persistent_content
    return (f"pages: ephemeral {count(eph.pages)}, persistent "
            f"{count(pers.pages)} | dedup saved "
            f"{format_size(host.dedup_saved_bytes)}, ratio "
            f"{host.compression_ratio:.2f}")


def _stored(host: HostStats) -> str:
    both = host.ephemeral_content + host.persistent_content
    return (f"stored: raw {count(both.raw_pages)}, compressed "
            f"{count(both.compressed_pages)}, same-filled "
            f"{count(both.same_filled_pages)} (zero {count(both.zero_pages)})")


def _rates(previous: Snapshot | None, current: Snapshot) -> str:
    seconds = elapsed(previous, current)
    now = current.host
    then = now if previous is None else previous.host
    puts = per_second(then.ops.puts, now.ops.puts, seconds)
    gets = per_second(then.ops.gets, now.ops.gets, seconds)
    evictions = per_second(then.ephemeral_content.evictions,
                           now.ephemeral_content.evictions, seconds)
    dedup = "on" if now.dedup else "off"
    return (f"per second: puts {rate(puts)}, gets {rate(gets)}, evictions "
            f"{rate(evictions)} | compress {now.compress}, dedup {dedup}")
