"""Workloads: trace requests become page-cache and anonymous-memory
operations; synthetic workloads say so."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from tmem import InvalidArgument
from tmem.guest.disk import VirtualDisk
from tmem.guest.memory import Guest
from tmem.guest.traces import TraceSpec
from tmem.guest.workloads import (
    AnonReplay,
    BlockReplay,
    Idle,
    SyntheticAnon,
    steps,
)


@pytest.fixture
def guest(pages: list[bytes]) -> Guest:
    return Guest("g", 64, None, disk=VirtualDisk(contents=pages))


def test_block_requests_become_reads_and_partial_writes(
        guest: Guest, tmp_path: Path) -> None:
    trace = tmp_path / "msrc_x.csv"
    trace.write_text(
        "1,hm,0,Read,8192,8192,5\n"      # blocks 2-3
        "2,hm,0,Write,4608,4096,5\n"     # blocks 1-2, first one partial
        "3,hm,0,Write,40960,512,5\n")    # block 10, partial
    assert sum(1 for _ in steps(guest, BlockReplay(
        TraceSpec(str(trace))))) == 3
    c = guest.counters()
    assert (c.read_requests, c.write_requests) == (1, 2)
    assert (c.blocks_read, c.blocks_written) == (2, 3)
    assert c.page_cache_misses == 2 + 1 + 1  # reads, then partial blocks
    assert c.disk_sectors_read == 4 * 8


def test_memory_references_touch_their_pages(guest: Guest,
                                             tmp_path: Path) -> None:
    trace = tmp_path / "memsim_x"
    trace.write_text("1000 R\n1fff W\n2000 R\n")
    list(steps(guest, AnonReplay(TraceSpec(str(trace)))))
    c = guest.counters()
    assert (c.anon_touches, c.anon_first_touches) == (3, 2)
    assert guest.holds_anon(1) and guest.holds_anon(2)


def test_idle_steps_do_nothing(guest: Guest) -> None:
    assert len(list(steps(guest, Idle(5)))) == 5
    assert guest.counters().anon_touches == 0
    with pytest.raises(InvalidArgument, match="idle steps -1"):
        Idle(-1)


def test_a_synthetic_workload_says_so_and_frees_its_pages(
        guest: Guest) -> None:
    phase = SyntheticAnon(pages=100, touches=500, seed=3)
    assert phase.kind.startswith("synthetic")
    assert phase.label.startswith("synthetic")
    assert asdict(phase)["kind"] == "synthetic-anon"
    assert len(list(steps(guest, phase))) == 500
    c = guest.counters()
    assert 0 < c.anon_first_touches <= 100
    assert c.reclaims_anon > 0  # 100 pages do not fit in 64 frames
    assert guest.committed == 0
    with pytest.raises(InvalidArgument, match="writes_per_mille 2000"):
        SyntheticAnon(pages=1, touches=1, writes_per_mille=2000)


def test_labels_name_the_trace_window() -> None:
    spec = TraceSpec("lirs_sprite.trace.gz", start=10, stop=20)
    assert BlockReplay(spec).label == "block:lirs_sprite.trace.gz[10:20]"
    assert AnonReplay(TraceSpec("m", device=3)).label == "anon:m@3[0:]"
