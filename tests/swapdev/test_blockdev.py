"""Detaching: the swapoff memory check, its timeout, idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmem.engine.errors import SwapError
from tmem.swapdev import blockdev
from tmem.swapdev.system import SwapArea


def test_swapoff_is_refused_when_swapped_bytes_exceed_available() -> None:
    area = SwapArea("/dev/loop5", "partition", 1 << 30, 600 << 20, 10)
    with pytest.raises(SwapError) as caught:
        blockdev.check_swapoff_fits(area, 500 << 20)
    message = str(caught.value)
    assert "600.0 MiB in swap exceeds MemAvailable 500.0 MiB" in message
    assert "/dev/loop5" in message
    blockdev.check_swapoff_fits(area, 600 << 20)


def test_swapoff_timeout_grows_with_the_bytes_to_read_back() -> None:
    small = SwapArea("/dev/loop5", "partition", 1 << 30, 0, 10)
    big = SwapArea("/dev/loop5", "partition", 1 << 30, 1 << 30, 10)
    assert blockdev.swapoff_timeout(small, 30) == 30
    assert blockdev.swapoff_timeout(big, 30) == 30 + 64


def test_detaching_an_image_nothing_holds_does_nothing(
        tmp_path: Path) -> None:
    assert blockdev.detach(str(tmp_path / "swap.img")) == []
