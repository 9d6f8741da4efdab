"""The FUSE operations called directly, as libfuse would (no mount)."""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest

import tmem
from tmem.swapdev import fusefs
from tmem.swapdev.image import SwapImage

P = tmem.PAGE_SIZE
PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


@pytest.fixture
def ops(host: tmem.Host) -> fusefs._Operations:
    pool = host.client("swap").new_pool(persistent=True)
    return fusefs._Operations(SwapImage(pool, 8 << 20), threading.Event())


def test_a_stats_reader_sees_one_snapshot_across_reads(
        ops: fusefs._Operations, pages: list[bytes]) -> None:
    fh = ops.open("/stats", os.O_RDONLY)
    ops.write("/swap.img", pages[0], 0, 0)  # after the open: not seen
    text = ops.read("/stats", 10, 0, fh) + ops.read("/stats", 4096, 10, fh)
    ops.release("/stats", fh)
    fields = json.loads(text)
    assert fields["writes"] == 0
    assert fields["server_pid"] == os.getpid()


def test_pool_failures_reach_the_kernel_as_eio(
        ops: fusefs._Operations, pages: list[bytes]) -> None:
    ops.image.pool.destroy()
    for call in (lambda: ops.read("/swap.img", P, 0, 0),
                 lambda: ops.write("/swap.img", pages[0], 0, 0),
                 lambda: ops.fallocate("/swap.img", PUNCH, 0, P, 0)):
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno == errno.EIO


def test_unknown_names_do_not_exist(ops: fusefs._Operations) -> None:
    with pytest.raises(OSError) as caught:
        ops.getattr("/other")
    assert caught.value.errno == errno.ENOENT


def test_the_image_size_is_fixed(ops: fusefs._Operations) -> None:
    assert ops.truncate("/swap.img", 8 << 20) == 0
    with pytest.raises(OSError) as caught:
        ops.truncate("/swap.img", 0)
    assert caught.value.errno == errno.EPERM


def test_memory_goes_back_to_the_kernel_when_discards_halve_the_pool(
        ops: fusefs._Operations, pages: list[bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(fusefs, "TRIM_MIN_PAGES", 4)
    monkeypatch.setattr(fusefs, "trim_heap", lambda: trims.append(1) or True)
    ops.write("/swap.img", b"".join(pages[:16]), 0, 0)

    # steady churn: a few pages freed, the pool stays above half
    ops.fallocate("/swap.img", PUNCH, 0, 2 * P, 0)
    ops.fallocate("/swap.img", PUNCH, 2 * P, 4 * P, 0)
    assert trims == []
    # the workload ends: the pool drops below half
    ops.fallocate("/swap.img", PUNCH, 6 * P, 8 * P, 0)
    assert trims == [1]
    # already trimmed at this size: the next small discard does not trim
    ops.fallocate("/swap.img", PUNCH, 14 * P, P, 0)
    assert trims == [1]
