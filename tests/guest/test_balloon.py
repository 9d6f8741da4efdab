"""Selfballooning and selfshrinking policies, tick by tick."""

from __future__ import annotations

import pytest

from tmem import InvalidArgument
from tmem.guest.balloon import SelfBalloon, SelfShrink, ShrinkState


def test_shrinking_moves_an_eighth_of_the_gap() -> None:
    balloon = SelfBalloon(reserve=10, floor=1)
    assert balloon.target(committed=90, current=900, ceiling=1000) == \
        900 - 800 // 8


def test_growing_takes_the_whole_gap_at_once() -> None:
    balloon = SelfBalloon(reserve=10, floor=1)
    assert balloon.target(committed=590, current=100, ceiling=1000) == 600


def test_the_target_stays_between_floor_and_ceiling() -> None:
    balloon = SelfBalloon(reserve=0, floor=64)
    assert balloon.target(committed=0, current=65, ceiling=1000) == 64
    assert balloon.target(committed=5000, current=100, ceiling=1000) == 1000


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"down": 0}, "selfballoon down 0 must be an int >= 1"),
    ({"reserve": -1}, "selfballoon reserve -1 must be an int >= 0"),
])
def test_bad_balloon_settings_are_refused(kwargs: dict[str, int],
                                          message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        SelfBalloon(**kwargs)


def test_selfshrink_waits_for_inertia_then_shrinks_every_tick() -> None:
    state = ShrinkState(SelfShrink(inertia=3, hysteresis=20))
    assert state.target(1000) is None  # grew from 0: re-armed
    assert state.target(1000) is None
    assert state.target(1000) is None
    assert state.target(1000) == 950
    assert state.target(950) == 903
    assert state.target(960) is None  # grew: re-armed


def test_selfshrink_empties_a_small_frontswap() -> None:
    state = ShrinkState(SelfShrink(inertia=1, hysteresis=20))
    state.target(20)
    assert state.target(20) == 0
    assert state.target(0) is None


def test_bad_selfshrink_settings_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="selfshrink inertia 0"):
        SelfShrink(inertia=0)
