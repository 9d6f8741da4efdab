"""The `tmem` command line.

Each subcommand is a thin wrapper: parse options, call the layer that does
the work, print.  Errors from tmem become one line on stderr and exit
status 2; nothing here catches anything else.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

import tmem
from tmem.monitor import commands as monitor_commands


class _TmemErrorsAsLines(click.Group):
    """Turns a TmemError into `tmem: error: ...` and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except tmem.TmemError as error:
            click.echo(f"tmem: error: {error}", err=True)
            sys.exit(2)


@click.group(cls=_TmemErrorsAsLines)
@click.version_option(tmem.__version__, prog_name="tmem")
def main() -> None:
    """Transcendent Memory for Linux hosts."""


@main.group()
def bench() -> None:
    """Benchmarks on real data, against real peers where there are some."""


@bench.command("engine")
@click.option("--pages", default=100_000, show_default=True,
              help="Real pages to store (the memory target wants 100k).")
@click.option("--repeats", default=3, show_default=True,
              help="Runs per measurement; the fastest counts.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results as one JSON object.")
def bench_engine(pages: int, repeats: int, as_json: bool) -> None:
    """The embedded engine: put/get pages/s and bytes per page."""
    from tmem.experiments import bench_engine as b

    result = b.run(pages=pages, repeats=repeats)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        b.render(result)


# the monitor's commands live with the monitor
main.add_command(monitor_commands.top)
main.add_command(monitor_commands.list_command)
main.add_command(monitor_commands.ctl)
