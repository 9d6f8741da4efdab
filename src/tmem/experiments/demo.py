"""`tmem demo` and `tmem experiment`: run a scenario twice and report.

`tmem demo` is `tmem experiment data/experiments/demo.toml`: four guests
as separate processes, out of phase, on real traces; first with a static
split of the RAM and no tmem, then with smaller guests and the rest
pooled in a daemon.  Live progress shows a bar per guest and the pool's
occupancy; the end is a table, results.json and plot.png in a folder it
names.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from tmem.engine.errors import InvalidArgument
from tmem.engine.handles import format_size
from tmem.experiments import report, runner
from tmem.experiments.runner import RunResult, Sample
from tmem.experiments.scenario import Scenario


def default_output(scenario: Scenario) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in scenario.name.lower())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("tmem-results") / f"{slug.strip('-')[:40]}-{stamp}"


def run(scenario: Scenario, output: Path, *, address: str | None = None,
        console: Console | None = None) -> dict[str, Any]:
    """Both runs with live progress; write the results; return them.

    Raises:
        InvalidArgument: `output` cannot be a folder of results, found
            before anything runs.
        ConnectionLost: no daemon answers at `address` (also early).
        RunFailed: a guest or the daemon failed during a run.
    """
    made = not output.exists()
    _make_folder(output)
    try:
        return _run_and_write(scenario, output, address, console)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                output.rmdir()  # only if the run left it empty
        raise


def _run_and_write(scenario: Scenario, output: Path, address: str | None,
                   console: Console | None) -> dict[str, Any]:
    if address is not None:
        runner.check_lent_daemon(scenario, address)  # now, not after a run
    console = console or Console(stderr=True)
    console.print(f"[bold]{scenario.name}[/bold]: {len(scenario.guests)} "
                  f"guests, {scenario.total_frames} frames of RAM "
                  f"({format_size(scenario.total_frames * 4096)}) in all")
    static = _with_progress(scenario, False, address, console)
    pooled = _with_progress(scenario, True, address, console)
    summary = report.summarize(scenario, static, pooled)
    report.write_results(output, scenario, static, pooled, summary)
    report.plot(output, summary, pooled)
    return summary


def _make_folder(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".tmem-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise InvalidArgument(
            f"output {str(output)!r} cannot hold the results: "
            f"{error.strerror or error}") from None


def _with_progress(scenario: Scenario, tmem_run: bool, address: str | None,
                   console: Console) -> RunResult:
    frames = scenario.tmem_frames() if tmem_run else \
        scenario.static_frames()
    title = (f"with tmem: guests of {frames[0]} frames + a "
             f"{format_size(scenario.pool_bytes())} pool" if tmem_run else
             f"static split: guests of {frames[0]} frames, no tmem")
    bars = Progress(TextColumn("{task.description:<18}"), BarColumn(),
                    MofNCompleteColumn(), console=console)
    tasks = {g.name: bars.add_task(g.name, total=1) for g in scenario.guests}
    pool_line = Text("pool: -" if tmem_run else "")

    def progress(event: str, details: dict[str, Any]) -> None:
        if event == "round":
            for name, (steps, total) in details.items():
                bars.update(tasks[name], completed=steps, total=total)
        elif event == "sample":
            pool_line.plain = _pool_text(details["sample"])

    console.print(title)
    try:
        with Live(Group(bars, pool_line), console=console,
                  refresh_per_second=4, transient=False):
            result = runner.run(scenario, tmem_run, address=address,
                                progress=progress)
    finally:
        if not console.is_terminal:
            console.line()  # Live leaves a pipe mid-line
    console.print(f"  done in {result.seconds:.1f} s")
    return result


def _pool_text(sample: Sample) -> str:
    held = ", ".join(f"{name} {pages}" for name, pages in
                     sample.pages.items())
    return (f"pool: {format_size(sample.used)} of "
            f"{format_size(sample.capacity)} used; pages per guest: {held}")
