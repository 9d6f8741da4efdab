"""Virtual disks: real, deterministic contents and counted traffic."""

from __future__ import annotations

import pytest

from tmem import InvalidArgument
from tmem.guest.disk import SwapDisk, VirtualDisk, corpus_slice, mix


def test_contents_are_real_pages_and_deterministic(
        pages: list[bytes]) -> None:
    disk = VirtualDisk(seed=7, contents=pages)
    again = VirtualDisk(seed=7, contents=pages)
    blocks = [disk.content(0, b, 0) for b in range(200)]
    assert blocks == [again.content(0, b, 0) for b in range(200)]
    assert set(blocks) <= set(pages)
    assert len(set(blocks)) > 100  # blocks spread over the slice


def test_seeds_and_versions_change_contents(pages: list[bytes]) -> None:
    a, b = VirtualDisk(seed=1, contents=pages), VirtualDisk(2, contents=pages)
    differ = sum(a.content(0, n, 0) != b.content(0, n, 0) for n in range(100))
    assert differ > 90
    changed = sum(a.content(0, n, 0) != a.content(0, n, 1) for n in range(100))
    assert changed > 90


def test_the_mix_is_the_same_on_every_run() -> None:
    assert mix(1, 2, 3) == mix(1, 2, 3) != mix(3, 2, 1)
    assert mix(0) == 0x25FC6DD36CE04B20  # pinned: a change remaps every disk


def test_writes_store_versions_and_traffic_is_counted(
        pages: list[bytes]) -> None:
    disk = VirtualDisk(contents=pages)
    assert disk.version(3, 9) == 0
    disk.write(3, 9, 4)
    assert disk.read(3, 9) == disk.content(3, 9, 4)
    assert (disk.sectors_read, disk.sectors_written) == (8, 8)


def test_the_swap_disk_remembers_which_page_each_slot_holds() -> None:
    swap = SwapDisk(16)
    swap.write(3, page=77, version=2)
    assert swap.read(3) == (77, 2)
    assert (swap.reads, swap.writes) == (1, 1)
    swap.forget(3)
    with pytest.raises(InvalidArgument, match="slot 3 was never written"):
        swap.read(3)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="corpus slice 0"):
        corpus_slice(0)
    with pytest.raises(InvalidArgument, match="swap size 0"):
        SwapDisk(0)
    with pytest.raises(InvalidArgument, match="at least one page"):
        VirtualDisk(contents=[])
