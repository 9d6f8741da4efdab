"""Workloads: what a guest replays, as plain data, and how it is replayed.

A workload is a sequence of phases.  Each phase is a frozen dataclass
(picklable, and `asdict` gives JSON) with a `kind`:
- `BlockReplay`: a window of a block I/O trace (or of the LIRS buffer-
  cache trace) replayed into the page cache: a read request reads its
  blocks, a write request writes them, marking a partial first or last
  block when the request is not 4 KiB aligned.
- `AnonReplay`: a window of a memory reference trace (memsim): each
  reference touches anonymous page address >> 12, writing on W.
- `Idle`: a number of steps in which the guest does nothing (its balloon
  still ticks), so guests replayed together can take turns.
- `SyntheticAnon`: not a recording.  Its kind and label say "synthetic":
  a program allocates `pages` anonymous pages, touches them in a
  deterministic pseudo-random order, then frees them all.  Page contents
  are still real corpus pages.

A step is one request, one memory reference or one idle tick:
`steps(guest, phase)` performs one step per item it yields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from tmem.engine.errors import InvalidArgument
from tmem.guest.disk import mix
from tmem.guest.memory import Guest
from tmem.guest.traces import BLOCK, Op, TraceSpec


@dataclass(frozen=True)
class BlockReplay:
    """Replay a block trace window into the guest's page cache."""

    trace: TraceSpec
    kind: str = field(default="block", init=False)

    @property
    def label(self) -> str:
        return f"block:{_window(self.trace)}"


@dataclass(frozen=True)
class AnonReplay:
    """Replay a memory reference trace window as anonymous memory."""

    trace: TraceSpec
    kind: str = field(default="anon", init=False)

    @property
    def label(self) -> str:
        return f"anon:{_window(self.trace)}"


@dataclass(frozen=True)
class Idle:
    """Do nothing for `steps` steps."""

    steps: int
    kind: str = field(default="idle", init=False)

    def __post_init__(self) -> None:
        if type(self.steps) is not int or self.steps < 0:
            raise InvalidArgument(
                f"idle steps {self.steps!r} must be an int >= 0")

    @property
    def label(self) -> str:
        return f"idle:{self.steps}"


@dataclass(frozen=True)
class SyntheticAnon:
    """Synthetic: allocate, touch at random and free anonymous pages."""

    pages: int
    touches: int
    writes_per_mille: int = 200
    seed: int = 0
    first_page: int = 1 << 32
    """Page numbers used: [first_page, first_page + pages)."""
    kind: str = field(default="synthetic-anon", init=False)

    def __post_init__(self) -> None:
        for name in ("pages", "touches", "writes_per_mille", "first_page"):
            value = getattr(self, name)
            if type(value) is not int or value < (1 if name == "pages"
                                                  else 0):
                raise InvalidArgument(
                    f"synthetic anon {name} {value!r} must be a "
                    "non-negative int (pages >= 1)")
        if self.writes_per_mille > 1000:
            raise InvalidArgument(
                f"writes_per_mille {self.writes_per_mille!r} must be "
                "<= 1000")

    @property
    def label(self) -> str:
        return (f"synthetic-anon:{self.pages}pages,{self.touches}touches,"
                f"seed{self.seed}")


Phase = BlockReplay | AnonReplay | Idle | SyntheticAnon


def _window(spec: TraceSpec) -> str:
    stop = "" if spec.stop is None else str(spec.stop)
    device = "" if spec.device is None else f"@{spec.device}"
    return f"{spec.name}{device}[{spec.start}:{stop}]"


def steps(guest: Guest, phase: Phase) -> Iterator[None]:
    """Replay a phase into a guest, one step per yield."""
    if isinstance(phase, BlockReplay):
        return _block_steps(guest, phase.trace)
    if isinstance(phase, AnonReplay):
        return _anon_steps(guest, phase.trace)
    if isinstance(phase, Idle):
        return iter([None] * phase.steps)
    return _synthetic_steps(guest, phase)


def _block_steps(guest: Guest, trace: TraceSpec) -> Iterator[None]:
    for request in trace.requests():
        first = request.offset // BLOCK
        end = request.offset + request.length
        count = (end - 1) // BLOCK - first + 1
        if request.op is Op.READ:
            guest.read(request.device, first, count)
        else:
            guest.write(request.device, first, count,
                        partial_first=request.offset % BLOCK != 0,
                        partial_last=end % BLOCK != 0)
        yield None


def _anon_steps(guest: Guest, trace: TraceSpec) -> Iterator[None]:
    touch = guest.touch
    for request in trace.requests():
        touch(request.offset >> 12, request.op is Op.WRITE)
        yield None


def _synthetic_steps(guest: Guest, phase: SyntheticAnon) -> Iterator[None]:
    first, pages = phase.first_page, phase.pages
    for i in range(phase.touches):
        pick = mix(phase.seed, i)
        write = pick >> 32 & 1023 < phase.writes_per_mille * 1024 // 1000
        guest.touch(first + pick % pages, write)
        yield None
    for page in range(first, first + pages):
        if guest.holds_anon(page):
            guest.free(page)
