"""`tmem top`: the live terminal monitor, a Textual app over `TopView`.

Keys: t toggles every counter under each client and pool, s sorts by the
next column, f freezes or thaws the selected client, up/down (or k/j)
select, PageUp/PageDown scroll, q quits.

Rules:
- The ControlAPI is called only from worker threads, one call at a time
  (a lock), so a slow or hung daemon never freezes the screen or the
  keys.  Results come back to the event loop through `call_from_thread`.
- At most one refresh is in flight; a timer starts one every `interval`
  seconds, so a lost daemon is retried at that pace for as long as it
  takes.
- A refused refresh (not an admin) ends the app and `run_top` raises it,
  so the command prints one line.  A failed action (not admin, client
  gone) is a message on the status line, never a crash; ConnectionLost
  from an action marks the view disconnected, as from a refresh.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from tmem.engine.api import ControlAPI
from tmem.engine.errors import ConnectionLost, TmemError
from tmem.engine.stats import Snapshot
from tmem.monitor.view import TopView

T = TypeVar("T")


class TopApp(App[None]):
    """The live monitor of one tmem host.

    Args:
        control: where snapshots come from and actions go.
        interval: seconds between refreshes.
        details: start with every counter shown (as if `t` was pressed).
    """

    TITLE = "tmem top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #header { height: auto; }
    #title { height: 1; text-style: bold; }
    #table { height: 1fr; scrollbar-size-vertical: 1; }
    #status { height: 1; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("t", "toggle_details", "Details"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("f", "freeze", "Freeze/thaw"),
        Binding("up,k", "move(-1)", "Up", show=False, priority=True),
        Binding("down,j", "move(1)", "Down", show=False, priority=True),
    ]

    def __init__(self, control: ControlAPI, interval: float,
                 details: bool = False) -> None:
        super().__init__()
        self.control = control
        self.interval = interval
        self.view = TopView(interval)
        self.view.details = details
        self.message = ""
        self.failure: TmemError | None = None
        """What ended the app other than the user, for run_top to raise."""
        self._calls = threading.Lock()
        self._polling = False
        self._poll_again = False

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="title")
        with VerticalScroll(id="table"):
            yield Static(id="body")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        self.poll()
        self.set_interval(self.interval, self.poll)

    # -- talking to the host (worker threads) ---------------------------------

    def _call(self, function: Callable[..., T], *args: object) -> T:
        with self._calls:
            return function(*args)

    def poll(self) -> None:
        """Start a refresh, or another one right after the one in flight
        (which may have read the host before an action changed it)."""
        if self._polling:
            self._poll_again = True
            return
        self._polling = True
        self._fetch()

    @work(thread=True, group="control")
    def _fetch(self) -> None:
        try:
            snap = self._call(self.control.snapshot)
        except ConnectionLost as error:
            self.call_from_thread(self._refreshed, error)
        except TmemError as error:  # not admin, say: no use retrying
            self.call_from_thread(self._fail, error)
        else:
            self.call_from_thread(self._refreshed, snap)

    def _fail(self, error: TmemError) -> None:
        self.failure = error
        self.exit()

    def _refreshed(self, result: Snapshot | ConnectionLost) -> None:
        self._polling = False
        if isinstance(result, ConnectionLost):
            self._disconnected(result)
        else:
            self.view.update(result)
            self.redraw()
        if self._poll_again:
            self._poll_again = False
            self.poll()

    def _disconnected(self, error: ConnectionLost) -> None:
        self.view.lost(error)
        self.redraw()

    @work(thread=True, group="control")
    def _set_frozen(self, client_id: int, name: str, freeze: bool) -> None:
        verb = "freeze" if freeze else "thaw"
        action = self.control.freeze if freeze else self.control.thaw
        try:
            self._call(action, client_id)
        except ConnectionLost as error:
            self.call_from_thread(self._disconnected, error)
            return
        except TmemError as error:
            self.call_from_thread(
                self.say, f"cannot {verb} client {client_id} {name!r}: "
                f"{error}")
            return
        done = "froze" if freeze else "thawed"
        self.call_from_thread(self.say,
                              f"{done} client {client_id} {name!r}")
        self.call_from_thread(self.poll)

    # -- keys -----------------------------------------------------------------

    def action_toggle_details(self) -> None:
        self.view.toggle_details()
        self.redraw()

    def action_cycle_sort(self) -> None:
        column = self.view.cycle_sort()
        self.say(f"sorted by {column.title}")

    def action_move(self, step: int) -> None:
        self.view.move(step)
        self.redraw()

    def action_freeze(self) -> None:
        client = self.view.selected_client()
        if client is None:
            self.say("no client selected: the table is empty")
            return
        self._set_frozen(client.client_id, client.name, not client.frozen)

    # -- drawing --------------------------------------------------------------

    def say(self, message: str) -> None:
        """Show a one-line message on the status line."""
        self.message = message
        self.redraw()

    def redraw(self) -> None:
        if not self.is_running:
            return  # a worker finished while the app shuts down
        view = self.view
        lines = view.header()
        header = Text("\n".join(lines))
        if not view.connected:
            header.stylize("bold red", 0, len(lines[0]))
        self.query_one("#header", Static).update(header)

        table = view.table()
        title = Text(table[0].text)
        title.stylize("reverse", *view.title_span(view.sort_index))
        self.query_one("#title", Static).update(title)

        selected = view.selected_client()
        chosen = None if selected is None else selected.client_id
        body = Text()
        for number, line in enumerate(table[1:]):
            start = len(body)
            body.append(line.text + "\n")
            if line.is_row and line.client_id == chosen:
                body.stylize("reverse", start, start + len(line.text))
                self._keep_visible(number)
        self.query_one("#body", Static).update(body)
        self.query_one("#status", Static).update(Text(self.message))

    def _keep_visible(self, line: int) -> None:
        table = self.query_one("#table", VerticalScroll)
        top, height = int(table.scroll_y), table.size.height
        if line < top:
            table.scroll_to(y=line, animate=False)
        elif height and line >= top + height:
            table.scroll_to(y=line - height + 1, animate=False)


def run_top(control: ControlAPI, interval: float,
            details: bool = False) -> None:
    """Run the monitor in this terminal until the user quits.

    Raises:
        TmemError: the daemon refused the snapshot (not an admin).
    """
    app = TopApp(control, interval, details)
    app.run()
    if app.failure is not None:
        raise app.failure
