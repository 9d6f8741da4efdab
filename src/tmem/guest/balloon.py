"""Selfballooning and selfshrinking: how a guest sizes itself each tick.

Both are policies only: they say what to do and hold no memory.  The guest
calls them once a tick (its runner decides when a tick is), so no wall
clock is involved anywhere.

Selfballooning, as the original's xen-selfballoon:
- the goal is the committed memory (anonymous pages the guest's programs
  hold, in RAM or swapped) plus a reserve;
- above the goal the guest gives back 1/`down` of the gap each tick
  (down = 8); below it, it takes back 1/`up` of the gap (up = 1: all at
  once), since a growing guest is about to fault;
- never below `floor` frames nor above the guest's own RAM.

Selfshrinking, as the original's frontswap_selfshrink:
- once the frontswap page count has not grown for `inertia` ticks (3),
  pull pages back out of tmem down to count - count/`hysteresis` (20),
  or to zero once count is at most `hysteresis`; growth re-arms it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tmem.engine.errors import InvalidArgument


@dataclass(frozen=True)
class SelfBalloon:
    """The selfballooning policy (plain data: picklable, JSON-ready)."""

    reserve: int = 64
    """Frames kept above the committed memory."""
    floor: int = 64
    """Fewest frames the guest keeps."""
    down: int = 8
    """Shrink by 1/down of the gap per tick."""
    up: int = 1
    """Grow by 1/up of the gap per tick."""

    def __post_init__(self) -> None:
        for name in ("reserve", "floor", "down", "up"):
            value = getattr(self, name)
            low = 0 if name == "reserve" else 1
            if type(value) is not int or value < low:
                raise InvalidArgument(
                    f"selfballoon {name} {value!r} must be an int >= {low}")

    def target(self, committed: int, current: int, ceiling: int) -> int:
        """The frames to hold after this tick."""
        goal = committed + self.reserve
        if current > goal:
            target = current - (current - goal) // self.down
        else:
            target = current + (goal - current) // self.up
        return max(self.floor, min(target, ceiling))


@dataclass(frozen=True)
class SelfShrink:
    """The frontswap selfshrinking policy (plain data)."""

    inertia: int = 3
    """Ticks without growth before shrinking starts."""
    hysteresis: int = 20
    """Shrink by 1/hysteresis of the pages each tick."""

    def __post_init__(self) -> None:
        for name in ("inertia", "hysteresis"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise InvalidArgument(
                    f"selfshrink {name} {value!r} must be an int >= 1")


class ShrinkState:
    """What selfshrinking remembers between ticks."""

    def __init__(self, policy: SelfShrink) -> None:
        self.policy = policy
        self.last = 0
        self.countdown = policy.inertia

    def target(self, pages: int) -> int | None:
        """The frontswap pages to keep after this tick, or None to leave
        them be."""
        policy = self.policy
        grew = pages > self.last
        self.last = pages
        if pages == 0 or grew:
            self.countdown = policy.inertia
            return None
        if self.countdown:  # once it reaches 0, shrink every tick
            self.countdown -= 1
            if self.countdown:
                return None
        if pages <= policy.hysteresis:
            return 0
        return pages - pages // policy.hysteresis
