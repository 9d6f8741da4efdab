"""`tmem top` driven through Textual's headless pilot against an embedded
host under live traffic: what is on the screen after each key."""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from textual.pilot import Pilot

import tmem
from tmem.monitor.connect import connect_control
from tmem.monitor.testing import EmbeddedControl
from tmem.monitor.top import TopApp
from tmem.testing import daemon_in_thread

INTERVAL = 0.1
Scenario = Callable[[Pilot[None], TopApp], Awaitable[None]]


def screen_text(app: TopApp) -> str:
    """The characters on the app's screen, one line per row."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(),
                      record=True, force_terminal=True,
                      legacy_windows=False)
    # the compositor is private, but it is what export_screenshot() draws
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def until(pilot: Pilot[None], app: TopApp,
                wanted: str | Callable[[str], bool],
                seconds: float = 5.0) -> str:
    """Wait until `wanted` is on screen (or the screen satisfies it);
    return the screen."""
    def seen(screen: str) -> bool:
        return wanted in screen if isinstance(wanted, str) \
            else wanted(screen)
    screen = ""
    for _ in range(int(seconds / 0.02)):
        screen = screen_text(app)
        if seen(screen):
            return screen
        await pilot.pause(0.02)
    raise AssertionError(f"{wanted!r} never showed; screen:\n{screen}")


def run(control: EmbeddedControl, scenario: Scenario,
        interval: float = INTERVAL) -> None:
    async def main() -> None:
        app = TopApp(control, interval)
        async with app.run_test(size=(80, 24)) as pilot:
            await scenario(pilot, app)
    asyncio.run(main())


def table_rows(screen: str) -> list[list[str]]:
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(" ID NAME"))
    rows = []
    for line in lines[start + 1:]:
        cells = line.split()
        if not cells or not cells[0].isdigit():
            break
        rows.append(cells)
    return rows


def test_shows_host_summary_and_one_row_per_client_with_rates(
        live: EmbeddedControl) -> None:
    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        screen = await until(
            pilot, app, lambda s: "per second: puts " in s
            and "puts -," not in s)
        assert "tmem top: connected, 3 clients, 6 pools (0 shared)" in screen
        assert "memory: capacity 2.0 MiB, used" in screen
        assert "stored: raw " in screen
        assert "per second: puts -" not in screen
        title = next(line for line in screen.splitlines()
                     if line.startswith(" ID NAME"))
        assert title.rstrip().endswith("PUT/s GET/s")
        assert [r[1] for r in table_rows(screen)] == [
            "web", "database", "batch"]
        assert all(len(line) <= 80 for line in screen.splitlines())
    run(live, scenario)


def test_t_toggles_every_counter_under_clients_and_pools(
        live: EmbeddedControl) -> None:
    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        await until(pilot, app, "web")
        assert "ephemeral_ops:" not in screen_text(app)
        await pilot.press("t")
        screen = await until(pilot, app, "ephemeral_ops: puts=")
        assert "client 1: client_id=1 name=web" in screen
        assert "pool 0 ephemeral: pool_id=0" in screen
        await pilot.press("t")
        await pilot.pause()
        assert "ephemeral_ops:" not in screen_text(app)
    run(live, scenario)


def test_s_cycles_the_sort_column(live: EmbeddedControl) -> None:
    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        await until(pilot, app, "sorted by ID")
        await pilot.press("s")
        screen = await until(pilot, app, "sorted by NAME")
        names = [r[1] for r in table_rows(screen)]
        assert names == sorted(names) == ["batch", "database", "web"]
        for _ in range(5):
            await pilot.press("s")
        await until(pilot, app, "sorted by PERS")
    run(live, scenario)


def test_f_freezes_the_selected_client_and_its_puts_are_refused(
        live: EmbeddedControl) -> None:
    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        await until(pilot, app, "database")
        await pilot.press("down", "f")
        screen = await until(pilot, app, "froze client 2 'database'")
        before = _refused_frozen(live, "database")
        screen = await until(pilot, app, " F ")
        row = next(r for r in table_rows(screen) if r[1] == "database")
        assert row[4] == "F"  # ST, after WGT and CAP
        for _ in range(200):
            if _refused_frozen(live, "database") > before:
                break
            await pilot.pause(0.02)
        assert _refused_frozen(live, "database") > before
        assert _refused_frozen(live, "web") == 0

        await pilot.press("f")
        await until(pilot, app, "thawed client 2 'database'")
        assert not live.host.find_client("database").frozen
    run(live, scenario)


def _refused_frozen(control: EmbeddedControl, name: str) -> int:
    client = control.host.find_client(name).stats()
    return client.ops.refused_frozen


def test_f_without_admin_rights_is_a_message_not_a_crash(
        live: EmbeddedControl) -> None:
    live.admin = False

    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        await until(pilot, app, "web")
        await pilot.press("f")
        await until(pilot, app, "cannot freeze client 1 'web': 'freeze' "
                    "needs an admin connection")
        assert not live.host.find_client("web").frozen
        await pilot.press("t")  # still answering keys
        await until(pilot, app, "ephemeral_ops:")
    run(live, scenario)


def test_a_refused_snapshot_ends_top_with_that_one_reason(
        live: EmbeddedControl) -> None:
    def refuse() -> tmem.Snapshot:
        raise tmem.PermissionDenied("'snapshot' needs an admin connection")

    live.snapshot = refuse  # type: ignore[method-assign]
    seen: list[TopApp] = []

    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        seen.append(app)
        for _ in range(250):
            if app.failure is not None:
                break
            await pilot.pause(0.02)
    run(live, scenario)
    assert isinstance(seen[0].failure, tmem.PermissionDenied)
    assert not seen[0].is_running


def test_shows_disconnected_keeps_retrying_and_recovers(
        live: EmbeddedControl) -> None:
    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        await until(pilot, app, "tmem top: connected")
        live.disconnect()
        screen = await until(pilot, app, "disconnected, retrying every "
                             "0.1s")
        assert "last error: daemon 'embedded' is not answering" in screen
        assert "web" in screen  # the last data stays
        calls = live.calls
        for _ in range(250):  # still retrying, every interval
            if live.calls >= calls + 2:
                break
            await pilot.pause(0.02)
        assert live.calls >= calls + 2
        assert "disconnected" in screen_text(app)
        live.reconnect()
        await until(pilot, app, "tmem top: connected")
        assert "disconnected" not in screen_text(app)
    run(live, scenario)


def test_q_quits(live: EmbeddedControl) -> None:
    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        await until(pilot, app, "web")
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    run(live, scenario)


# -- against a real daemon ----------------------------------------------------

@pytest.fixture
def sock() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="tmem-"))
    yield folder / "top.sock"
    shutil.rmtree(folder, ignore_errors=True)


def traffic(address: str, pages: list[bytes], stop: threading.Event,
            name: str) -> None:
    """A tenant putting and getting until told to stop (across a daemon
    restart it resumes its session)."""
    client = tmem.connect(address, name=name, resume_window=20.0)
    cache = client.new_pool()
    n = 0
    while not stop.is_set():
        cache.put_many([(n, i, p) for i, p in enumerate(pages[:16])])
        cache.get_many([(n, i) for i in range(8)])
        n += 1
        stop.wait(0.02)
    client.close()


def test_top_follows_a_live_daemon_and_its_restart(
        sock: Path, pages: list[bytes]) -> None:
    address = f"unix:{sock}"
    stop = threading.Event()
    state = sock.with_name("top.state")
    first = daemon_in_thread(sock, state=state)
    first.__enter__()
    workers = [threading.Thread(target=traffic,
                                args=(address, pages, stop, name))
               for name in ("alpha", "beta")]
    for w in workers:
        w.start()

    async def scenario(pilot: Pilot[None], app: TopApp) -> None:
        screen = await until(pilot, app, lambda s: "beta" in s
                             and "alpha" in s and "puts -," not in s)
        assert "tmem top: connected, 2 clients" in screen
        await pilot.press("t")
        await until(pilot, app, "puts_stored=")
        await pilot.press("t")
        await pilot.press("s")
        await until(pilot, app, "sorted by NAME")
        rows = table_rows(screen_text(app))
        assert [r[1] for r in rows] == ["alpha", "beta"]
        await pilot.press("f")  # freezes the selected (first) client
        await until(pilot, app, lambda s: any(
            r[1] == "alpha" and "F" in r for r in table_rows(s)))

        first.__exit__(None, None, None)  # the daemon goes away...
        await until(pilot, app, "disconnected", seconds=10)
        second = daemon_in_thread(sock, state=state)  # ...and comes back
        second.__enter__()
        try:
            await until(pilot, app, lambda s: "connected" in s
                        and "disconnected" not in s, seconds=10)
        finally:
            stop.set()
            await asyncio.sleep(0.2)
            second.__exit__(None, None, None)

    async def main() -> None:
        app = TopApp(connect_control(address), 0.1)
        async with app.run_test(size=(80, 24)) as pilot:
            await scenario(pilot, app)

    try:
        asyncio.run(main())
    finally:
        stop.set()
        for w in workers:
            w.join(30)
