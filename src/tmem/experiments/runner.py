"""Run a scenario's guests as separate processes, in lockstep rounds.

Each guest is its own process (as a VM would be) running `GuestRun`
against its own daemon connection (or against nothing, in the static
run).  The parent is the clock: every round it tells each guest to take
`quantum` steps and waits for all of them, so guests that are meant to
be out of phase stay out of phase however fast each one runs.  Between
rounds it reads the daemon's snapshot (pool occupancy per guest, for the
progress display and the plot) and, with selfballooning, lends the
frames the guests gave back to the pool.

Rules:
- The tmem run starts its own daemon (a `tmem serve` child on a socket
  in a private folder) unless an address is given; either way the pool's
  capacity is set to the scenario's.
- If a guest fails or the daemon dies, every child is stopped and
  `RunFailed` says what happened; no partial result is returned.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import tmem
from tmem.engine.errors import ConnectionLost, InvalidArgument, TmemError
from tmem.engine.stats import Snapshot, to_dict
from tmem.experiments.measure import RunFailed, server_process
from tmem.experiments.scenario import Scenario
from tmem.guest.run import GuestConfig, GuestRun
from tmem.guest.workloads import Idle, SyntheticAnon


@dataclass
class Sample:
    """The pool between two rounds."""

    seconds: float
    round: int
    pages: dict[str, int]
    """Pages in tmem per guest."""
    used: int
    capacity: int


@dataclass
class RunResult:
    mode: str
    """"static" or "tmem"."""
    seconds: float
    guests: list[dict[str, Any]]
    samples: list[Sample] = field(default_factory=list)
    host: dict[str, Any] | None = None
    """The daemon's host snapshot after the last round (tmem run)."""
    daemon_cpu_s: float | None = None
    """CPU the daemon spent (None: a lent daemon, not measured)."""


Progress = Callable[[str, dict[str, Any]], None]
"""progress(event, details): "round" with steps per guest, or "sample"."""


def run(scenario: Scenario, tmem_run: bool, *, address: str | None = None,
        progress: Progress | None = None) -> RunResult:
    """Run every guest of the scenario once; see the module's rules."""
    configs = scenario.guest_configs(tmem_run)
    report = progress or (lambda event, details: None)
    with contextlib.ExitStack() as stack:
        daemon: _Daemon | None = None
        if tmem_run:
            daemon = stack.enter_context(_daemon(scenario, address))
        guests = stack.enter_context(_guests(
            configs, daemon.address if daemon else None))
        if daemon is not None:
            daemon.apply_settings(scenario)
        started = time.perf_counter()
        try:
            samples = _rounds(scenario, guests, daemon, started, report)
        except RunFailed:
            if daemon is not None:
                daemon.check_alive()  # a dead daemon is the real cause
            raise
        # the pool as the workloads left it, before guests unmount
        host = None if daemon is None else to_dict(daemon.snapshot().host)
        results = [g.finish() for g in guests]
        seconds = time.perf_counter() - started
        result = RunResult("tmem" if tmem_run else "static", seconds,
                           results, samples, host)
        if daemon is not None:
            result.daemon_cpu_s = daemon.cpu_seconds()
        return result


def _rounds(scenario: Scenario, guests: list[_Guest],
            daemon: _Daemon | None, started: float,
            report: Progress) -> list[Sample]:
    samples: list[Sample] = []
    rounds = 0
    while not all(g.done for g in guests):
        for g in guests:
            g.send_step(scenario.quantum)
        for g in guests:
            g.receive_step()
        rounds += 1
        report("round", {g.name: (g.steps, g.total) for g in guests})
        if daemon is not None:
            sample = daemon.sample(started, rounds, guests, scenario)
            samples.append(sample)
            report("sample", {"sample": sample})
    return samples


# -- the guests' processes -----------------------------------------------------

class _Guest:
    """The parent's end of one guest process."""

    def __init__(self, config: GuestConfig, address: str | None,
                 context: Any) -> None:
        self.name = config.name
        self.total = _total_steps(config)
        self.steps = 0
        self.done = False
        self.counters: dict[str, Any] = {}
        self.frames = config.frames
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_guest_main, args=(config, address, child),
            name=f"tmem-guest-{config.name}", daemon=True)
        self.process.start()
        child.close()
        self._expect("ready")

    def send_step(self, quantum: int) -> None:
        if not self.done:
            self._conn.send(("step", quantum))

    def receive_step(self) -> None:
        if self.done:
            return
        self.steps, self.done, self.counters = self._expect("stepped")

    def finish(self) -> dict[str, Any]:
        self._conn.send(("finish", None))
        (result,) = self._expect("result")
        self.process.join(30)
        return dict(result)

    def _expect(self, kind: str) -> Any:
        try:
            message = self._conn.recv()
        except (EOFError, OSError):
            raise RunFailed(
                f"guest {self.name!r} died (exit code "
                f"{self.process.exitcode}); no results were written"
            ) from None
        if message[0] == "error":
            raise RunFailed(f"guest {self.name!r} failed: {message[1]}")
        if message[0] != kind:
            raise RunFailed(f"guest {self.name!r} said {message[0]!r}, "
                            f"expected {kind!r}")
        return message[1:]

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


def _total_steps(config: GuestConfig) -> int:
    total = 0
    for phase in config.workload:
        if isinstance(phase, Idle):
            total += phase.steps
        elif isinstance(phase, SyntheticAnon):
            total += phase.touches + phase.pages
        else:
            total += (phase.trace.stop or 0) - phase.trace.start
    return total


def _guest_main(config: GuestConfig, address: str | None,
                conn: Connection) -> None:
    """A guest process: build the guest, then obey the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    client = None
    try:
        if address is not None:
            # a local daemon that drops us has died: do not wait long
            client = tmem.connect(address, name=config.name,
                                  resume_window=2.0)
        run = GuestRun(config, client)
        conn.send(("ready",))
        while True:
            command, argument = conn.recv()
            if command == "finish":
                conn.send(("result", run.finish().to_dict()))
                break
            run.step(argument)
            conn.send(("stepped", run.steps, run.done,
                       run.counters().to_dict()))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone (stopped): nobody to report to
    except (TmemError, OSError) as error:
        _report(conn, str(error))
    except Exception as error:  # reported, then the parent stops all
        _report(conn, repr(error))
    finally:
        if client is not None:
            with contextlib.suppress(TmemError):
                client.close()


def _report(conn: Connection, error: str) -> None:
    with contextlib.suppress(OSError):
        conn.send(("error", error))


@contextlib.contextmanager
def _guests(configs: list[GuestConfig], address: str | None
            ) -> Iterator[list[_Guest]]:
    context = multiprocessing.get_context("spawn")
    guests: list[_Guest] = []
    try:
        for config in configs:
            guests.append(_Guest(config, address, context))
        yield guests
    finally:
        for guest in guests:
            guest.stop()


# -- the daemon ------------------------------------------------------------------

class _Daemon:
    """The pool: a daemon we started, or one we were pointed at."""

    def __init__(self, address: str, process: subprocess.Popen[bytes] | None,
                 capacity: int) -> None:
        self.address = address
        self.process = process
        self.base_capacity = capacity
        self.control = tmem.connect_control(address)
        self.control.set_capacity(capacity)
        self._lent = 0

    def apply_settings(self, scenario: Scenario) -> None:
        """Each guest's weight, cap and codec, set as the host's admin
        would (a daemon we were lent may default to another codec)."""
        for plan in scenario.guests:
            self.control.set_weight(plan.name, plan.weight)
            self.control.set_compress(plan.name, scenario.compress)
            if plan.cap is not None:
                self.control.set_cap(plan.name, plan.cap * 4096)

    def snapshot(self) -> Snapshot:
        self.check_alive()
        try:
            return self.control.snapshot()
        except ConnectionLost as error:
            self.check_alive()
            raise RunFailed(f"the tmem daemon stopped answering: {error}; "
                            "no results were written") from None

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RunFailed(
                f"the tmem daemon died during the run (exit code "
                f"{self.process.returncode}); no results were written")

    def sample(self, started: float, rounds: int, guests: list[_Guest],
               scenario: Scenario) -> Sample:
        if scenario.selfballoon:
            self._lend_ballooned(guests)
        snap = self.snapshot()
        pages = {c.name: c.ephemeral_pages + c.persistent_pages
                 for c in snap.clients}
        return Sample(time.perf_counter() - started, rounds,
                      {g.name: pages.get(g.name, 0) for g in guests},
                      snap.host.used, snap.host.capacity)

    def _lend_ballooned(self, guests: list[_Guest]) -> None:
        """Frames guests gave back go to the pool, and come back out."""
        given = sum(g.frames - int(g.counters.get("target_frames",
                                                  g.frames))
                    for g in guests)
        if given != self._lent:
            self.control.set_capacity(self.base_capacity + given * 4096)
            self._lent = given

    def cpu_seconds(self) -> float | None:
        if self.process is None:
            return None  # a lent daemon also serves others
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / _clock_ticks()


def _clock_ticks() -> int:
    import os
    return int(os.sysconf("SC_CLK_TCK"))


def check_lent_daemon(scenario: Scenario, address: str) -> None:
    """Refuse a daemon an experiment cannot measure honestly.

    Raises:
        ConnectionLost: nothing answers at `address`.
        InvalidArgument: it has clients already (their pages would sit in
            the pool the scenario sizes), or the scenario wants dedup,
            which only a daemon's start-up settings turn on.
    """
    with tmem.connect_control(address) as control:
        clients = control.snapshot().clients
    if clients:
        names = sorted({c.name for c in clients})
        listed = ", ".join(names[:5]) + (
            f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise InvalidArgument(
            f"the daemon at {address} already has clients ({listed}); an "
            "experiment needs one to itself, or none (no --connect)")
    if scenario.dedup:
        raise InvalidArgument(
            f"the scenario sets dedup, which the daemon at {address} "
            "takes only from its own settings; run it without --connect")


@contextlib.contextmanager
def _daemon(scenario: Scenario, address: str | None) -> Iterator[_Daemon]:
    if address is not None:
        with tmem.connect_control(address) as control:
            before = control.snapshot().host.capacity
        daemon = _Daemon(address, None, scenario.pool_bytes())
        try:
            yield daemon
        finally:
            # someone else's daemon: give it back as we found it
            with contextlib.suppress(tmem.TmemError):
                daemon.control.set_capacity(before)
            daemon.control.close()
        return
    folder = Path(tempfile.mkdtemp(prefix="tmem-demo-"))
    sock = folder / "tmem.sock"
    command = [sys.executable, "-m", "tmem.cli", "serve", "--socket",
               str(sock), "--capacity", str(scenario.pool_bytes()),
               "--compress", scenario.compress, "--grace", "5"]
    if scenario.dedup:
        command.append("--dedup")
    try:
        with server_process(command, sock, "the tmem daemon") as process:
            daemon = _Daemon(f"unix:{sock}", process, scenario.pool_bytes())
            yield daemon
            daemon.control.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
