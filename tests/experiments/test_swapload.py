"""The swap workload: unique non-zero pages, verified reads, phases."""

from __future__ import annotations

import lz4.block
import pytest

from tmem.engine.errors import SwapError
from tmem.experiments.swapload import PageMaker, run_workload


def test_pages_are_unique_non_zero_and_half_compressible() -> None:
    maker = PageMaker(seed=5)
    made = [maker.page(n) for n in range(512)]
    assert len(set(made)) == len(made)
    assert all(any(page) and len(page) == 4096 for page in made)
    sizes = [len(lz4.block.compress(page)) for page in made]
    even = sum(sizes[0::2]) / 256
    odd = sum(sizes[1::2]) / 256
    assert even < 0.8 * 4096 < odd  # real data compresses, random does not


def test_the_same_seed_makes_the_same_pages() -> None:
    assert PageMaker(seed=9).page(77) == PageMaker(seed=9).page(77)
    assert PageMaker(seed=9).page(77) != PageMaker(seed=10).page(77)


@pytest.mark.needs_memcg
def test_workload_verifies_its_pages_and_reports_each_phase() -> None:
    phases: list[str] = []
    result = run_workload(16, 256 << 20, phases.append, timeout=60)
    assert result.ok, result
    assert phases == ["filled", "done"]
    assert len(result.read_seconds) == 2
    assert result.as_dict()["swap_in_mib_s"] > 0


@pytest.mark.needs_memcg
@pytest.mark.usefixtures("memcg_v1")
def test_a_workload_that_cannot_swap_is_reported_as_oom_killed() -> None:
    # swappiness 0 in a limited v1 cgroup: reclaim never swaps anon pages
    with pytest.raises(SwapError, match=r"gave no 'filled'.*OOM killer"):
        run_workload(64, 16 << 20, timeout=60, swappiness=0)
