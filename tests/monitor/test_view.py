"""Rates, sorting, selection and the disconnected state of `tmem top`."""

from __future__ import annotations

import dataclasses

import pytest

import tmem
from tmem.monitor import view as v
from tmem.monitor.testing import EmbeddedControl, Traffic
from tmem.testing import FakeClock


def row_of(view: v.TopView, name: str) -> v.Row:
    return next(r for r in view.rows() if r.client.name == name)


def selected_name(view: v.TopView) -> str:
    selected = view.selected_client()
    assert selected is not None
    return selected.name


def over_one_round(stepped: Traffic, clock: FakeClock) -> v.TopView:
    """A view of two snapshots, one round of traffic and 2 s apart."""
    host = stepped.tenants[0].client.host
    view = v.TopView(1.0)
    view.update(host.snapshot())
    stepped.step()
    clock.advance(2.0)
    view.update(host.snapshot())
    return view


def test_rates_are_counter_deltas_over_the_snapshot_clock(
        stepped: Traffic, clock: FakeClock) -> None:
    view = over_one_round(stepped, clock)

    # one round: 16 puts in each of 2 pools, 8 gets in each
    web = row_of(view, "web")
    assert web.put_rate == 32 / 2.0
    assert web.get_rate == 16 / 2.0
    host_puts = 3 * 32 / 2.0
    assert f"puts {host_puts:.0f}, gets {host_puts / 2:.0f}" in \
        view.header()[-1]


def test_no_rates_while_disconnected_nor_across_the_outage(
        stepped: Traffic, clock: FakeClock) -> None:
    view = over_one_round(stepped, clock)
    assert row_of(view, "web").put_rate
    view.lost(tmem.ConnectionLost("daemon gone"))
    assert row_of(view, "web").put_rate is None
    assert "puts -, gets -" in view.header()[-1]
    stepped.step()
    clock.advance(2.0)
    # the first snapshot after the outage has no base for rates
    view.update(stepped.tenants[0].client.host.snapshot())
    assert row_of(view, "web").put_rate is None


def test_no_rates_before_the_second_snapshot(control: EmbeddedControl
                                              ) -> None:
    view = v.TopView(1.0)
    view.update(control.snapshot())
    assert all(r.put_rate is None for r in view.rows())
    assert "puts -, gets -, evictions -" in view.header()[-1]


def test_no_rate_when_the_clock_stood_still(stepped: Traffic) -> None:
    host = stepped.tenants[0].client.host
    view = v.TopView(1.0)
    view.update(host.snapshot())
    stepped.step()
    view.update(host.snapshot())
    assert row_of(view, "web").put_rate is None


def test_counters_going_backwards_give_no_rate() -> None:
    assert v.per_second(10, 5, 1.0) is None
    assert v.per_second(5, 10, 2.0) == 2.5
    assert v.per_second(5, 10, 0.0) is None
    assert v.per_second(5, 10, None) is None


def test_a_new_client_has_no_rate_yet(stepped: Traffic,
                                      clock: FakeClock) -> None:
    host = stepped.tenants[0].client.host
    view = v.TopView(1.0)
    view.update(host.snapshot())
    host.client("newcomer").new_pool().put(1, 0, bytes(4096))
    clock.advance(1.0)
    view.update(host.snapshot())
    assert row_of(view, "newcomer").put_rate is None
    assert row_of(view, "web").put_rate == 0.0


def test_evictions_per_second_show_in_the_header(
        pages: list[bytes], clock: FakeClock) -> None:
    host = tmem.Host(capacity="256KiB", compress="none", clock=clock)
    pool = host.client("small").new_pool()
    view = v.TopView(1.0)
    view.update(host.snapshot())
    for i, page in enumerate(pages[:100]):
        pool.put(1, i, page)
    clock.advance(4.0)
    view.update(host.snapshot())
    evicted = host.stats().ephemeral_content.evictions
    assert evicted > 0
    assert f"evictions {v.rate(evicted / 4.0)}" in view.header()[-1]


def test_sort_cycles_through_every_column_and_wraps(
        control: EmbeddedControl) -> None:
    view = v.TopView(1.0)
    view.update(control.snapshot())
    titles = [view.cycle_sort().title for _ in v.COLUMNS]
    assert titles == [c.title for c in v.COLUMNS[1:]] + ["ID"]


def test_numbers_sort_largest_first_and_names_smallest_first(
        control: EmbeddedControl) -> None:
    control.host.client("zeta").new_pool(persistent=True).put(
        1, 0, b"x" * 4096)
    view = v.TopView(1.0)
    view.update(control.snapshot())
    while view.sort_column.title != "NAME":
        view.cycle_sort()
    names = [r.client.name for r in view.rows()]
    assert names == sorted(names)
    while view.sort_column.title != "EPH":
        view.cycle_sort()
    eph = [r.client.ephemeral_pages for r in view.rows()]
    assert eph == sorted(eph, reverse=True)
    assert view.rows()[-1].client.name == "zeta"


def test_selection_follows_the_client_when_the_order_changes(
        control: EmbeddedControl) -> None:
    view = v.TopView(1.0)
    view.update(control.snapshot())
    assert selected_name(view) == "web"
    view.move(1)
    view.move(5)  # clamped at the last row
    assert selected_name(view) == "batch"
    while view.sort_column.title != "NAME":
        view.cycle_sort()
    assert selected_name(view) == "batch"
    assert view.rows()[0].client.name == "batch"


def test_a_lost_connection_keeps_the_last_snapshot(
        control: EmbeddedControl) -> None:
    view = v.TopView(2.0)
    view.update(control.snapshot())
    rows = view.table()
    control.disconnect()
    with pytest.raises(tmem.ConnectionLost) as lost:
        control.snapshot()
    view.lost(lost.value)
    header = view.header()
    assert header[0] == "tmem top: disconnected, retrying every 2s"
    assert "not answering" in header[1]
    assert view.table() == rows


def test_details_list_every_counter_of_clients_and_pools(
        control: EmbeddedControl) -> None:
    view = v.TopView(1.0)
    view.update(control.snapshot())
    view.toggle_details()
    shown = "\n".join(line.text for line in view.table())
    snap = control.snapshot()
    for stats in (snap.clients[0], snap.pools[0]):
        for f in dataclasses.fields(stats):
            assert f"{f.name}=" in shown or f"{f.name}:" in shown
    for f in dataclasses.fields(tmem.OpCounts):
        assert f" {f.name}=" in shown
    for f in dataclasses.fields(tmem.PageCounts):
        assert f" {f.name}=" in shown


def test_every_line_fits_80_columns(control: EmbeddedControl) -> None:
    control.host.set_cap("web", "64MiB")
    control.host.freeze("database")
    view = v.TopView(0.25)
    view.update(control.snapshot())
    view.toggle_details()
    view.lost(tmem.ConnectionLost("x " * 100))
    lines = view.render().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) > 40


def test_cells_show_cap_and_frozen_state(control: EmbeddedControl) -> None:
    control.host.set_cap("web", "64MiB")
    control.host.freeze("database")
    view = v.TopView(1.0)
    view.update(control.snapshot())
    start, end = view.title_span(v.COLUMNS.index(
        next(c for c in v.COLUMNS if c.title == "CAP")))
    cells = [(line.text[start:end], line.text[end + 1:end + 3])
             for line in view.table() if line.is_row]
    assert cells == [(" 64M", "  "), ("   -", "F "), ("   -", "  ")]
