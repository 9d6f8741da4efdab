"""bench swap's targets and tables, on made-up runs (no swapping)."""

from __future__ import annotations

from typing import Any

import pytest

from tmem.engine.errors import SwapError
from tmem.experiments import bench_swap
from tmem.experiments.bench_swap import BackendResult, make_backend
from tmem.experiments.swapload import WorkloadResult


def _run(fill: float, reads: tuple[float, float]) -> WorkloadResult:
    return WorkloadResult(600, 200 << 20, fill, reads, 0, 0, 400_000,
                          300_000, 110_000, 300_000)


def _row(name: str, runs: list[WorkloadResult],
         per_page: float | None) -> dict[str, Any]:
    memory = {} if per_page is None else {
        "pages": 100_000, "bytes_per_page": per_page,
        "compression_ratio": 1.3, "accounted_per_page": per_page - 50,
        "rss_growth": int(per_page * 100_000)}
    result = BackendResult(name, runs,
                           [{"filled": memory, "done": memory}] * len(runs))
    return result.as_dict()


@pytest.fixture
def result() -> dict[str, Any]:
    rows = [_row("tmem", [_run(4, (8, 8)), _run(3, (6, 6))], 3000),
            _row("zram-lz4", [_run(2, (3, 3))], 2800),
            _row("zram-lzo-rle", [_run(2, (3, 3))], 2700),
            _row("disk", [_run(1, (5, 5))], None)]
    return {"mib": 600, "limit_mib": 200, "repeats": 2,
            "other_swap_areas": [], "backends": rows,
            "loadavg_1m": [0.5, 0.7],
            "targets": [t.as_dict() for t in bench_swap._targets(rows)]}


def test_the_fastest_swap_in_run_counts(result: dict[str, Any]) -> None:
    tmem_row = result["backends"][0]
    assert tmem_row["swap_in_mib_s"] == 100.0
    assert tmem_row["swap_out_mib_s"] == 200.0


def test_targets_compare_tmem_with_disk_and_zram(
        result: dict[str, Any]) -> None:
    by_name = {t["name"]: t for t in result["targets"]}
    disk = by_name["swap-in, tmem / disk file"]
    assert disk["measured"] == pytest.approx(100 / 120)
    assert not disk["met"]
    zram = by_name["swap-in, tmem / zram lz4"]
    assert zram["measured"] == pytest.approx(0.5)
    memory = by_name["host B/swapped page, tmem RSS vs zram-lz4"]
    assert (memory["measured"], memory["limit"]) == (3000, 2800)


def test_render_prints_every_backend(result: dict[str, Any],
                                     capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    bench_swap.render(result)
    out = capsys.readouterr().out
    for name in ("tmem", "zram-lz4", "zram-lzo-rle", "disk", "targets"):
        assert name in out


def test_a_failed_backend_shows_as_failed() -> None:
    row = BackendResult("zram-lz4", error="hot_add failed").as_dict()
    assert bench_swap._row_cells(row)[-1] == "failed"
    assert bench_swap._targets([row]) == []


def test_unknown_backends_are_refused() -> None:
    with pytest.raises(SwapError, match="unknown"):
        make_backend("nbd", 1 << 30, "lz4")
