"""The headline check, in one process: two guests whose working sets rise
and fall out of phase, run without tmem and with it.

Setup (every number is an argument):
- Memory: `total_frames` page frames for the two guests together.
- Without tmem ("static"): each guest owns half of them.
- With tmem: each guest owns `guest_share` of its half; the frames left
  over become the host's capacity (bytes = frames x 4096), which both
  guests reach through cleancache (lz4, the engine's default).
- Workload: each guest replays the same real trace (by default the
  Sprite file-server references) into its own disk (different contents),
  in busy phases of `phase_steps` requests, each followed by an idle
  phase as long.  Guest B starts idle, so one guest is busy while the
  other rests.  The phase schedule is synthetic; the references are real.
- Optionally (`oracle_weights`) the host gives the busy guest weight 100
  and the resting one weight 1 at every phase change.  The host is told
  the schedule (an oracle): this shows what a management plane that
  tracks activity could gain; the engine does nothing like it by itself.

What counts is disk sectors read, summed over both guests.

Run: python -m tmem.experiments.out_of_phase [--json] [options]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tmem
from tmem.guest.disk import DEFAULT_CORPUS_PAGES
from tmem.guest.run import GuestConfig, GuestResult, run_together
from tmem.guest.traces import TraceSpec
from tmem.guest.workloads import BlockReplay, Idle, Phase

PAGE = 4096
QUANTUM = 50
"""Steps per turn: divides the phase lengths used, so turns and phases
line up."""


@dataclass(frozen=True)
class Setup:
    """The experiment's parameters (defaults: the documented run)."""

    total_frames: int = 1024
    phase_steps: int = 20_000
    busy_phases: int = 6
    trace: str = "lirs_sprite.trace.gz"
    guest_share: float = 0.5
    corpus_pages: int = DEFAULT_CORPUS_PAGES
    compress: str = "lz4"
    oracle_weights: bool = False

    def __post_init__(self) -> None:
        if self.phase_steps < QUANTUM or self.phase_steps % QUANTUM:
            raise tmem.InvalidArgument(
                f"phase_steps {self.phase_steps!r} must be a positive "
                f"multiple of {QUANTUM}")
        if not 0 < self.guest_share < 1:
            raise tmem.InvalidArgument(
                f"guest_share {self.guest_share!r} must be in (0, 1)")


def _workload(setup: Setup, starts_idle: bool) -> tuple[Phase, ...]:
    phases: list[Phase] = [Idle(setup.phase_steps)] if starts_idle else []
    for n in range(setup.busy_phases):
        window = TraceSpec(setup.trace, start=n * setup.phase_steps,
                           stop=(n + 1) * setup.phase_steps)
        phases += [BlockReplay(window), Idle(setup.phase_steps)]
    return tuple(phases)


def _configs(setup: Setup, frames: int) -> list[GuestConfig]:
    return [GuestConfig(name, frames, _workload(setup, starts_idle=i == 1),
                        frontswap=False, disk_seed=i,
                        corpus_pages=setup.corpus_pages)
            for i, name in enumerate(("guest-a", "guest-b"))]


def run(setup: Setup) -> dict[str, Any]:
    """Both runs; returns a JSON-ready summary with every counter."""
    half = setup.total_frames // 2

    # without tmem: a static split
    started = time.perf_counter()
    static = run_together(_configs(setup, half), [None, None],
                          quantum=QUANTUM)
    static_s = time.perf_counter() - started

    # with tmem: smaller guests, the rest pooled
    small = int(half * setup.guest_share)
    capacity = (setup.total_frames - 2 * small) * PAGE
    host = tmem.Host(capacity=capacity, compress=setup.compress)
    clients = [host.client("guest-a"), host.client("guest-b")]
    started = time.perf_counter()
    pooled = run_together(_configs(setup, small), list(clients),
                          quantum=QUANTUM,
                          before_round=_weights(setup, host, clients))
    pooled_s = time.perf_counter() - started

    before, after = _sectors_read(static), _sectors_read(pooled)
    return {
        "setup": setup.__dict__,
        "static": {"frames_per_guest": half, "seconds": static_s,
                   "disk_sectors_read": before,
                   "guests": [r.to_dict() for r in static]},
        "tmem": {"frames_per_guest": small, "host_capacity": capacity,
                 "seconds": pooled_s, "disk_sectors_read": after,
                 "host_evictions": host.stats().ephemeral_content.evictions,
                 "guests": [r.to_dict() for r in pooled]},
        "reduction": 1 - after / before if before else 0.0,
    }


def _weights(setup: Setup, host: tmem.Host, clients: list[tmem.Client]
             ) -> Callable[[int], None] | None:
    """The oracle: weight follows the phase schedule (or None: off)."""
    if not setup.oracle_weights:
        return None

    def before_round(rounds: int) -> None:
        busy = rounds * QUANTUM // setup.phase_steps % 2
        for i, client in enumerate(clients):
            host.set_weight(client, 100 if i == busy else 1)
    return before_round


def _sectors_read(results: list[GuestResult]) -> int:
    return sum(r.counters.disk_sectors_read for r in results)


def render(summary: dict[str, Any]) -> str:
    """A few lines for a person."""
    static, pooled = summary["static"], summary["tmem"]
    lines = [
        f"static : 2 guests x {static['frames_per_guest']} frames, no tmem:"
        f" {static['disk_sectors_read']:,} sectors read"
        f" ({static['seconds']:.1f} s)",
        f"tmem   : 2 guests x {pooled['frames_per_guest']} frames +"
        f" {pooled['host_capacity'] // PAGE} frames of tmem:"
        f" {pooled['disk_sectors_read']:,} sectors read"
        f" ({pooled['seconds']:.1f} s)",
    ]
    for guest in pooled["guests"]:
        c = guest["counters"]
        lines.append(
            f"  {guest['name']}: cleancache {c['cleancache_hits']:,} hits"
            f" of {c['cleancache_gets']:,} gets,"
            f" {c['cleancache_puts_stored']:,} of {c['cleancache_puts']:,}"
            f" puts kept, stale {c['stale_pages']}")
    reduction = summary["reduction"]
    verdict = "fewer" if reduction >= 0 else "more"
    lines.append(f"sectors read with tmem: {abs(100 * reduction):.1f}% "
                 f"{verdict} than static")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tmem.experiments.out_of_phase",
        description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = Setup()
    parser.add_argument("--total-frames", type=int,
                        default=defaults.total_frames)
    parser.add_argument("--phase-steps", type=int,
                        default=defaults.phase_steps)
    parser.add_argument("--busy-phases", type=int,
                        default=defaults.busy_phases)
    parser.add_argument("--trace", default=defaults.trace)
    parser.add_argument("--guest-share", type=float,
                        default=defaults.guest_share)
    parser.add_argument("--compress", default=defaults.compress)
    parser.add_argument("--oracle-weights", action="store_true",
                        help="host weights follow the phase schedule")
    parser.add_argument("--json", action="store_true",
                        help="print the whole summary as JSON")
    args = parser.parse_args(argv)
    setup = Setup(args.total_frames, args.phase_steps, args.busy_phases,
                  args.trace, args.guest_share, compress=args.compress,
                  oracle_weights=args.oracle_weights)
    try:
        summary = run(setup)
    except tmem.TmemError as error:
        print(f"out_of_phase: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1) if args.json else render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
