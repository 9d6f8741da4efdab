"""A miniature guest kernel memory manager that uses tmem, the real traces
it replays, and the runner that replays them.

Start at `run_guest(GuestConfig(...), client)`; see memory.py for the
guest's rules and workloads.py for what it can replay.
"""

from tmem.guest.balloon import SelfBalloon, SelfShrink
from tmem.guest.disk import SwapDisk, VirtualDisk
from tmem.guest.memory import Guest, GuestCounters
from tmem.guest.run import (
    GuestConfig,
    GuestResult,
    GuestRun,
    run_guest,
    run_together,
)
from tmem.guest.traces import Op, Request, TraceSpec
from tmem.guest.workloads import AnonReplay, BlockReplay, Idle, SyntheticAnon

__all__ = [
    "AnonReplay", "BlockReplay", "Guest", "GuestConfig", "GuestCounters",
    "GuestResult", "GuestRun", "Idle", "Op", "Request", "SelfBalloon",
    "SelfShrink", "SwapDisk", "SyntheticAnon", "TraceSpec", "VirtualDisk",
    "run_guest", "run_together",
]
