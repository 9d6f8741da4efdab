"""Compact numbers keep their width; long forms keep every counter."""

from __future__ import annotations

import dataclasses

import pytest

from tmem.monitor import text
from tmem.monitor.testing import EmbeddedControl


@pytest.mark.parametrize(("value", "shown"), [
    (0, "0"), (999, "999"), (1000, "1.0k"), (9949, "9.9k"),
    (9950, "10k"), (999_499, "999k"), (999_500, "1.0M"),
    (12_345_678, "12M"), (10**18, "huge"),
])
def test_counts_fit_four_columns(value: int, shown: str) -> None:
    assert text.count(value) == shown
    assert len(shown) <= 4


@pytest.mark.parametrize(("nbytes", "shown"), [
    (None, "-"), (0, "0B"), (512, "512B"), (4096, "4.0K"),
    (64 << 20, "64M"), (1536 << 20, "1.5G"), ((1 << 30) - 1, "1.0G"),
])
def test_sizes_fit_four_columns(nbytes: int | None, shown: str) -> None:
    assert text.size(nbytes) == shown


def test_rates_keep_a_decimal_only_when_small() -> None:
    assert text.rate(None) == "-"
    assert text.rate(0.25) == "0.2"
    assert text.rate(12.4) == "12"
    assert text.rate(123_456.0) == "123k"


def test_wrap_never_splits_an_item() -> None:
    items = [f"item number {i}" for i in range(20)]
    lines = text.wrap("title", items, width=40, sep=", ")
    assert max(len(line) for line in lines) <= 40
    joined = " ".join(line.strip() for line in lines)
    assert joined == "title: " + ", ".join(items)


def test_long_list_has_every_counter_of_every_pool(
        control: EmbeddedControl) -> None:
    snap = control.snapshot()
    lines = text.render_list(snap, long=True)
    assert max(len(line) for line in lines) <= 80
    pool_blocks = "\n".join(lines).count("all pool counters")
    assert pool_blocks == len(snap.pools) == 6
    shown = "\n".join(lines)
    ops = snap.pools[0].ops
    for f in dataclasses.fields(ops):
        assert f"{f.name}={getattr(ops, f.name)}" in shown


def test_short_list_names_host_clients_and_pools(
        control: EmbeddedControl) -> None:
    control.host.set_cap("web", "1MiB")
    lines = text.render_list(control.snapshot())
    shown = "\n".join(lines)
    assert lines[0].startswith("host: capacity 2.0 MiB, used ")
    assert "client 1 'web': weight 100, cap 1.0 MiB, frozen no" in shown
    assert "  pool 1: persistent, pages 16" in shown
    assert "all " not in shown
