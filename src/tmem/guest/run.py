"""Running guests: one config in, one JSON-ready result out.

A `GuestConfig` is plain data, so a guest can be built in a child process
from it; `GuestRun` replays the workload step by step against whatever
`ClientAPI` it is given (an embedded host's client, a daemon
connection, or None for a guest without tmem).

Rules:
- A step is one request, one memory reference or one idle tick.  The
  guest's balloon and selfshrink tick every `tick_every` steps.
- Progress is reported by calling `progress(name, steps, counters)`
  every `every` steps and once at the end, never twice for one count;
  the callback may send the counters anywhere (`GuestCounters.to_dict()`
  is JSON-ready).
- Wall and CPU time are measured around the guest's own steps with the
  injected clocks, so guests replayed together in one process are timed
  apart.
- When the workload ends the guest syncs its dirty pages (so every write
  reaches the disk counters), then unmounts cleancache and turns its
  swap area off in tmem.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tmem.engine.api import ClientAPI
from tmem.engine.errors import InvalidArgument
from tmem.frontends.cleancache import CleancacheStats
from tmem.frontends.frontswap import FrontswapStats
from tmem.guest.balloon import SelfBalloon, SelfShrink
from tmem.guest.disk import DEFAULT_CORPUS_PAGES, VirtualDisk
from tmem.guest.memory import Guest, GuestCounters
from tmem.guest.workloads import Phase, steps

Progress = Callable[[str, int, GuestCounters], None]
"""progress(guest name, steps done, counters)."""


@dataclass(frozen=True)
class GuestConfig:
    """Everything needed to build and run one guest (plain data)."""

    name: str
    frames: int
    workload: tuple[Phase, ...]
    swap_slots: int = 1 << 16
    swappiness: int = 60
    cleancache: bool = True
    frontswap: bool = True
    balloon: SelfBalloon | None = None
    selfshrink: SelfShrink | None = None
    disk_seed: int = 0
    """Makes this guest's disk contents differ from other guests'."""
    corpus_pages: int = DEFAULT_CORPUS_PAGES
    """Real pages the disks draw their contents from."""
    tick_every: int = 1000
    """Steps between balloon / selfshrink ticks."""

    def __post_init__(self) -> None:
        if type(self.tick_every) is not int or self.tick_every < 1:
            raise InvalidArgument(
                f"tick_every {self.tick_every!r} must be an int >= 1")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready dicts; each phase has a `label`."""
        data = asdict(self)
        data["workload"] = [dict(asdict(phase), label=phase.label)
                            for phase in self.workload]
        return data


@dataclass(frozen=True)
class GuestResult:
    """What one guest did over its whole workload."""

    name: str
    config: dict[str, Any]
    steps: int
    counters: GuestCounters
    cleancache: CleancacheStats | None
    frontswap: FrontswapStats | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain dicts, lists, strings and numbers."""
        return asdict(self)


class GuestRun:
    """A guest and the workload it is replaying.

    Args:
        config: the guest and its workload.
        client: tmem client, or None for a guest without tmem.
        clock, cpu_clock: seconds, for the guest's wall and CPU time.
    """

    def __init__(self, config: GuestConfig, client: ClientAPI | None, *,
                 clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time
                 ) -> None:
        self.config = config
        self.guest = Guest(
            config.name, config.frames, client,
            disk=VirtualDisk(config.disk_seed, config.corpus_pages),
            swap_slots=config.swap_slots, swappiness=config.swappiness,
            cleancache=config.cleancache, frontswap=config.frontswap,
            balloon=config.balloon, selfshrink=config.selfshrink)
        self._clock, self._cpu_clock = clock, cpu_clock
        self._steps = self._all_steps()
        self.steps = 0
        self.done = False
        self._result: GuestResult | None = None

    def _all_steps(self) -> Iterator[None]:
        for phase in self.config.workload:
            yield from steps(self.guest, phase)

    def step(self, limit: int) -> int:
        """Perform up to `limit` steps; return how many were performed
        (fewer only when the workload ended)."""
        guest, tick_every = self.guest, self.config.tick_every
        wall, cpu = self._clock(), self._cpu_clock()
        done = 0
        try:
            for _ in range(limit):
                if next(self._steps, StopIteration) is StopIteration:
                    self.done = True
                    break
                done += 1
                if (self.steps + done) % tick_every == 0:
                    guest.tick()
        finally:
            self.steps += done
            guest.wall_s += self._clock() - wall
            guest.cpu_s += self._cpu_clock() - cpu
        return done

    def counters(self) -> GuestCounters:
        return self.guest.counters()

    def finish(self) -> GuestResult:
        """Sync, take the final counters, leave tmem; idempotent."""
        if self._result is None:
            guest = self.guest
            guest.sync()
            counters = guest.counters()
            self._result = GuestResult(
                name=self.config.name, config=self.config.to_dict(),
                steps=self.steps, counters=counters,
                cleancache=None if guest.cleancache is None
                else guest.cleancache.stats(),
                frontswap=None if guest.frontswap is None
                else guest.frontswap.stats())
            guest.close()
        return self._result


def run_guest(config: GuestConfig, client: ClientAPI | None = None, *,
              progress: Progress | None = None, every: int = 10_000
              ) -> GuestResult:
    """Replay one guest's whole workload and return its result."""
    run = GuestRun(config, client)
    reported = -1
    while not run.done:
        run.step(every)
        if progress is not None and run.steps != reported:
            progress(config.name, run.steps, run.counters())
            reported = run.steps
    return run.finish()


def run_together(configs: Sequence[GuestConfig],
                 clients: Sequence[ClientAPI | None], *, quantum: int = 64,
                 progress: Progress | None = None, every: int = 10_000,
                 before_round: Callable[[int], None] | None = None
                 ) -> list[GuestResult]:
    """Replay several guests in one process, taking turns of `quantum`
    steps, so they share tmem as if they ran at once.

    `before_round(n)` is called before each round of turns with the
    number of rounds done so far (each guest has had n * quantum steps).

    Raises:
        InvalidArgument: configs and clients differ in number.
    """
    if len(configs) != len(clients):
        raise InvalidArgument(
            f"{len(configs)} guest configs but {len(clients)} clients; "
            "give one client (or None) per guest")
    runs = [GuestRun(c, client) for c, client in zip(configs, clients,
                                                      strict=True)]
    reported = [-1] * len(runs)
    rounds = 0
    while not all(run.done for run in runs):
        if before_round is not None:
            before_round(rounds)
        for i, run in enumerate(runs):
            if run.done:
                continue
            run.step(quantum)
            due = run.done or \
                run.steps // every > max(reported[i], 0) // every
            if progress is not None and due and run.steps != reported[i]:
                progress(run.config.name, run.steps, run.counters())
                reported[i] = run.steps
        rounds += 1
    return [run.finish() for run in runs]
