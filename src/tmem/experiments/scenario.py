"""A comparison to run: guests, their traces, RAM, the pool, from TOML.

The same scenario runs twice: *static*, every guest owns its share of the
machine's RAM and there is no tmem; and *tmem*, every guest keeps only
`guest_share` of that RAM and the frames left over become the daemon's
pool, which all guests reach through cleancache and frontswap.

File format (every key but the guests' names and workloads has a
default; see data/experiments/demo.toml):

    name = "..."
    total_frames = 4096      # RAM of all guests together, 4 KiB frames
    guest_share = 0.5        # tmem run: each guest keeps this share
    compress = "lz4"         # the pool's codec: none, lz4, zstd
    dedup = false
    selfballoon = false      # guests give idle frames back to the pool
    quantum = 250            # steps per round; guests advance in rounds

    [[guest]]
    name = "vm1"
    workload = "block"       # block | anon | synthetic-anon
    trace = "cloudphysics_cloudPhysicsIO.csv"   # bundled name or path
    format = "cloudphysics"  # only if the file name does not tell
    start = 0                # first record replayed
    busy = 10000             # records (steps) per busy phase
    idle = 10000             # idle steps between busy phases
    phases = 3               # busy phases
    idle_first = false       # begin idle: out of phase with the others
    weight = 100             # share of the pool under contention
    cap = 384                # frames of tmem it may hold (default: none)
    frames = 1024            # static RAM (default: an equal split)

Rules:
- Unknown keys, wrong types, a RAM size below MIN_FRAMES, a missing or
  unreadable trace: one line naming the key (and guest) and the rule,
  before anything runs.  Every trace record a guest will replay is read
  once at load, so a malformed line stops the experiment before its
  static run, not halfway.
- A synthetic workload says so in its name and output; its page
  contents are still real (see guest/workloads.py).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tmem import data
from tmem.engine.codecs import codec_named
from tmem.engine.errors import InvalidArgument
from tmem.engine.handles import check_name
from tmem.engine.host import MAX_WEIGHT
from tmem.guest.balloon import SelfBalloon
from tmem.guest.run import GuestConfig
from tmem.guest.traces import TraceSpec, format_of
from tmem.guest.workloads import (
    AnonReplay,
    BlockReplay,
    Idle,
    Phase,
    SyntheticAnon,
)
from tmem.server.config import MIN_CAPACITY

MIN_FRAMES = 64
"""Fewest RAM frames a guest can run with (page tables aside)."""
MAX_FRAMES = 1 << 20
"""4 GiB of guest RAM in all: guests hold their frames' pages for real."""
WORKLOADS = ("block", "anon", "synthetic-anon")
MAX_STEPS = 10 ** 8
"""The most records (or idle ticks) in a phase, and the latest start."""
MAX_PHASES = 10_000
_BOUNDS = (("start", 0, MAX_STEPS), ("busy", 1, MAX_STEPS),
           ("idle", 0, MAX_STEPS), ("phases", 1, MAX_PHASES),
           ("weight", 0, MAX_WEIGHT), ("cap", 0, MAX_FRAMES),
           ("pages", 1, MAX_FRAMES))
"""A guest key's (name, lowest, highest); a synthetic program's pages
are bounded like RAM, since its guest holds them for real."""


@dataclass(frozen=True)
class GuestPlan:
    """One guest of a scenario."""

    name: str
    workload: str
    trace: str | None
    format: str | None = None
    """The trace's format when its name does not tell (see traces.py)."""
    start: int = 0
    busy: int = 10_000
    idle: int = 10_000
    phases: int = 3
    idle_first: bool = False
    weight: int = 100
    cap: int | None = None
    """Frames of tmem the guest may hold (None: no cap)."""
    frames: int | None = None
    pages: int = 4096
    """synthetic-anon only: the pages the program allocates."""

    def workload_phases(self) -> tuple[Phase, ...]:
        """The guest's phases: busy windows with idle gaps."""
        out: list[Phase] = [Idle(self.idle)] if self.idle_first else []
        for n in range(self.phases):
            out.append(self._busy(n))
            if self.idle and n < self.phases - 1:
                out.append(Idle(self.idle))
        return tuple(out)

    def _busy(self, n: int) -> Phase:
        if self.workload == "synthetic-anon":
            return SyntheticAnon(self.pages, self.busy, seed=n)
        assert self.trace is not None
        window = TraceSpec(self.trace, self.format,
                           start=self.start + n * self.busy,
                           stop=self.start + (n + 1) * self.busy)
        if self.workload == "block":
            return BlockReplay(window)
        return AnonReplay(window)

    @property
    def label(self) -> str:
        what = self.trace if self.workload != "synthetic-anon" else \
            f"SYNTHETIC anon, {self.pages} pages"
        return f"{self.workload}: {what}"


@dataclass(frozen=True)
class Scenario:
    """A whole comparison (see the module's format)."""

    name: str = "experiment"
    total_frames: int = 4096
    guest_share: float = 0.5
    compress: str = "lz4"
    dedup: bool = False
    selfballoon: bool = False
    quantum: int = 250
    guests: tuple[GuestPlan, ...] = field(default=())

    def static_frames(self) -> list[int]:
        """Each guest's RAM without tmem (given, or an equal split)."""
        given = sum(g.frames or 0 for g in self.guests)
        unset = [g for g in self.guests if g.frames is None]
        each = (self.total_frames - given) // max(1, len(unset))
        return [g.frames if g.frames is not None else each
                for g in self.guests]

    def tmem_frames(self) -> list[int]:
        """Each guest's RAM in the tmem run."""
        return [max(MIN_FRAMES, int(f * self.guest_share))
                for f in self.static_frames()]

    def pool_bytes(self) -> int:
        """The daemon's capacity: the frames the guests gave up."""
        return (self.total_frames - sum(self.tmem_frames())) * 4096

    def guest_configs(self, tmem: bool) -> list[GuestConfig]:
        frames = self.tmem_frames() if tmem else self.static_frames()
        balloon = SelfBalloon() if self.selfballoon and tmem else None
        return [GuestConfig(g.name, f, g.workload_phases(), disk_seed=i,
                            balloon=balloon)
                for i, (g, f) in enumerate(zip(self.guests, frames,
                                               strict=True))]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)


# -- loading -------------------------------------------------------------------

_TOP = {"name": str, "total_frames": int, "guest_share": float,
        "compress": str, "dedup": bool, "selfballoon": bool, "quantum": int}
_GUEST = {"name": str, "workload": str, "trace": str, "format": str,
          "start": int,
          "busy": int, "idle": int, "phases": int, "idle_first": bool,
          "weight": int, "cap": int, "frames": int, "pages": int}


_KINDS = {int: "an integer", float: "a number", str: "a string",
          bool: "true or false"}


def load(path: Path) -> Scenario:
    """Read and check a scenario file."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as error:
        raise InvalidArgument(f"experiment file {str(path)!r} cannot be "
                              f"read: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"experiment file {str(path)!r} is not "
                              f"TOML: {error}") from None
    return from_dict(raw, where=str(path))


def from_dict(raw: dict[str, Any], where: str = "experiment") -> Scenario:
    guests_raw = raw.get("guest", [])
    top = {k: v for k, v in raw.items() if k != "guest"}
    settings = _typed(top, _TOP, where)
    if not isinstance(guests_raw, list) or not guests_raw:
        raise InvalidArgument(f"{where}: needs at least one [[guest]]")
    guests = tuple(_guest(g, f"{where}: guest {n + 1}")
                   for n, g in enumerate(guests_raw))
    scenario = Scenario(**settings, guests=guests)
    _check(scenario, where)
    return scenario


def _typed(values: dict[str, Any], types: dict[str, type],
           where: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        kind = types.get(key)
        if kind is None:
            raise InvalidArgument(
                f"{where}: key {key!r} is unknown; known keys: "
                + ", ".join(sorted(types)))
        if kind is float and isinstance(value, int) and \
                not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and
                                           isinstance(value, bool)):
            raise InvalidArgument(
                f"{where}: {key} = {value!r} must be {_KINDS[kind]}")
        out[key] = value
    return out


def _guest(raw: object, where: str) -> GuestPlan:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: must be a table")
    values = _typed(raw, _GUEST, where)
    for key in ("name", "workload"):
        if key not in values:
            raise InvalidArgument(f"{where}: {key} is required")
    plan = GuestPlan(**{"trace": None, **values})
    return plan


def _check(s: Scenario, where: str) -> None:
    names = [g.name for g in s.guests]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{where}: guest names {names!r} must "
                              "differ")
    if not 0 < s.guest_share < 1:
        raise InvalidArgument(f"{where}: guest_share {s.guest_share!r} "
                              "must be between 0 and 1")
    if s.quantum < 1:
        raise InvalidArgument(f"{where}: quantum {s.quantum!r} must be "
                              ">= 1")
    if not 0 < s.total_frames <= MAX_FRAMES:
        raise InvalidArgument(f"{where}: total_frames {s.total_frames!r} "
                              f"must be in 1..{MAX_FRAMES}")
    try:
        codec_named(s.compress)
    except InvalidArgument as error:
        raise InvalidArgument(f"{where}: {error}") from None
    given = sum(g.frames or 0 for g in s.guests)
    if given > s.total_frames:
        raise InvalidArgument(
            f"{where}: the guests' frames add up to {given}, more than "
            f"total_frames {s.total_frames}")
    for guest, frames in zip(s.guests, s.static_frames(), strict=True):
        _check_guest(guest, frames, where)
    if s.pool_bytes() < MIN_CAPACITY:
        raise InvalidArgument(
            f"{where}: with guest_share {s.guest_share} the guests keep "
            f"all but {max(0, s.pool_bytes()) // 4096} frames; a pool "
            f"needs at least {MIN_CAPACITY // 4096}")


def _check_guest(g: GuestPlan, frames: int, where: str) -> None:
    try:
        check_name(g.name, "guest name")
    except InvalidArgument as error:
        raise InvalidArgument(f"{where}: {error}") from None
    at = f"{where}: guest {g.name!r}"
    for key, low, high in _BOUNDS:
        value = getattr(g, key)
        if value is not None and not low <= value <= high:
            raise InvalidArgument(
                f"{at}: {key} = {value!r} must be in {low}..{high}")
    if g.workload not in WORKLOADS:
        raise InvalidArgument(f"{at}: workload {g.workload!r} must be one "
                              f"of {', '.join(WORKLOADS)}")
    if frames < MIN_FRAMES:
        raise InvalidArgument(
            f"{at}: RAM of {frames} frames is below the minimum "
            f"{MIN_FRAMES}; give it more frames or raise total_frames")
    if g.workload == "synthetic-anon":
        return
    if g.trace is None:
        raise InvalidArgument(f"{at}: workload {g.workload!r} needs a "
                              "trace")
    try:
        _check_trace(g.trace, g)
    except InvalidArgument as error:
        raise InvalidArgument(f"{at}: {error}") from None


def _check_trace(trace: str, g: GuestPlan) -> None:
    path = TraceSpec(trace, g.format).path()
    if not path.is_file():
        raise InvalidArgument(f"trace file {str(path)!r} does not exist "
                              "or is not a file")
    if g.format is None:
        format_of(path)
    last = g.start + (g.phases - 1) * g.busy
    # read every record the guest will replay, so a bad line stops the
    # experiment now rather than after its static run
    window = TraceSpec(trace, g.format, start=g.start, stop=last + g.busy)
    records = sum(1 for _ in window.requests())
    if records <= last - g.start:
        raise InvalidArgument(
            f"trace {trace!r} has no record {last} (start + "
            "(phases - 1) x busy): it is too short for this schedule")


def demo_path() -> Path:
    """The bundled scenario `tmem demo` runs."""
    return data.data_dir() / "experiments" / "demo.toml"


def with_overrides(s: Scenario, **changes: Any) -> Scenario:
    """A copy with some top-level settings changed (checked again)."""
    changed = replace(s, **{k: v for k, v in changes.items()
                            if v is not None})
    _check(changed, "overrides")
    return changed
