"""The `tmem` command line.

Each subcommand is a thin wrapper: parse options, call the layer that does
the work, print.  Errors from tmem become one line on stderr and exit
status 2; nothing here catches anything else.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

import tmem
from tmem.engine.handles import format_size
from tmem.monitor import commands as monitor_commands


class _TmemErrorsAsLines(click.Group):
    """Turns a TmemError into `tmem: error: ...` and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except tmem.TmemError as error:
            click.echo(f"tmem: error: {error}", err=True)
            sys.exit(2)


_summary_json = click.option(
    "--json", "as_json", is_flag=True,
    help="Print the summary as one JSON object at the end.")
_results_json = click.option(
    "--json", "as_json", is_flag=True,
    help="Print the results as one JSON object.")


@click.group(cls=_TmemErrorsAsLines)
@click.version_option(tmem.__version__, prog_name="tmem")
def main() -> None:
    """Transcendent Memory for Linux hosts."""


@main.command("demo")
@click.option("--output", type=click.Path(path_type=Path),
              help="Folder for results.json and plot.png [default: "
              "tmem-results/NAME-TIME].")
@_summary_json
def demo(output: Path | None, as_json: bool) -> None:
    """Guests on real traces, without and with tmem: what pooling saves."""
    from tmem.experiments import scenario

    _experiment(scenario.load(scenario.demo_path()), output, as_json, None)


@main.command("experiment")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path),
              help="Folder for results.json and plot.png.")
@_summary_json
@click.option("--connect", "address", default=None,
              help="Use this daemon, which must have no clients, for the "
              "tmem run instead of starting one (its capacity is the "
              "scenario's pool during the run, then set back).")
@click.option("--compress", help="Override the scenario's codec.")
@click.option("--guest-share", type=float,
              help="Override the share of RAM guests keep with tmem.")
@click.option("--selfballoon/--no-selfballoon", default=None,
              help="Override the scenario's selfballooning.")
def experiment(config: Path, output: Path | None, as_json: bool,
               address: str | None, compress: str | None,
               guest_share: float | None, selfballoon: bool | None) -> None:
    """Run the comparison described by a CONFIG file (TOML)."""
    from tmem.experiments import scenario

    plan = scenario.with_overrides(
        scenario.load(config), compress=compress, guest_share=guest_share,
        selfballoon=selfballoon)
    _experiment(plan, output, as_json, address)


def _experiment(plan: Any, output: Path | None, as_json: bool,
                address: str | None) -> None:
    from tmem.experiments import demo, report

    # SIGTERM unwinds like Ctrl-C: guests and the daemon are stopped and
    # nothing is left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = output or demo.default_output(plan)
    summary = demo.run(plan, folder, address=address)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        report.render(summary)
    click.echo(f"results: {folder}/results.json and {folder}/plot.png")


@main.group()
def bench() -> None:
    """Benchmarks on real data, against real peers where there are some."""


@bench.command("engine")
@click.option("--pages", default=100_000, show_default=True,
              type=click.IntRange(min=1),
              help="Real pages to store (the memory target wants 100k).")
@click.option("--repeats", default=3, show_default=True,
              type=click.IntRange(min=1),
              help="Runs per measurement; the fastest counts.")
@_results_json
def bench_engine(pages: int, repeats: int, as_json: bool) -> None:
    """The embedded engine: put/get pages/s and bytes per page."""
    from tmem.experiments import bench_engine as b

    result = b.run(pages=pages, repeats=repeats)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        b.render(result)


@main.command("serve")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="TOML file with any of the settings below.")
@click.option("--socket", type=click.Path(path_type=Path),
              help="Unix socket path [default: $XDG_RUNTIME_DIR/tmem/"
              "tmem.sock or /tmp/tmem-UID/tmem.sock].")
@click.option("--socket-mode", help="Octal file mode of the socket "
              "[default: 600].")
@click.option("--tcp", help="Also listen on HOST:PORT (needs --token-file).")
@click.option("--capacity", help="Memory to lend, e.g. 2GiB [default: a "
              "quarter of MemAvailable].")
@click.option("--compress", help="none, lz4, zstd or zstd:LEVEL "
              "[default: lz4].")
@click.option("--dedup/--no-dedup", default=None,
              help="Share identical ephemeral pages host-wide.")
@click.option("--max-clients", type=int)
@click.option("--max-pools", type=int, help="Pools per client [16].")
@click.option("--grace", type=float, help="Seconds a broken session "
              "waits to be resumed [30].")
@click.option("--token-file", type=click.Path(path_type=Path),
              help="File holding the tenant token (required for TCP).")
@click.option("--admin-token-file", type=click.Path(path_type=Path),
              help="File holding the admin token.")
@click.option("--metrics", help="Serve Prometheus /metrics on HOST:PORT.")
@click.option("--state", type=click.Path(path_type=Path),
              help="Save persistent pools here at shutdown; restore them "
              "at start.")
def serve(config_file: Path | None, **overrides: Any) -> None:
    """Run the tmem daemon in the foreground."""
    from tmem.server import config as cfg
    from tmem.server import daemon

    config = cfg.load(config_file, overrides)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s tmem: %(message)s")
    sys.exit(daemon.run(config))


@bench.command("server")
@click.option("--clients", default=4, show_default=True,
              type=click.IntRange(min=1),
              help="Client processes driving each server.")
@click.option("--pages", default=20_000, show_default=True,
              type=click.IntRange(min=1),
              help="Pages per client in the batched workload.")
@click.option("--unbatched", default=3_000, show_default=True,
              type=click.IntRange(min=1),
              help="Pages per client in the unbatched workload.")
@_results_json
def bench_server(clients: int, pages: int, unbatched: int,
                 as_json: bool) -> None:
    """tmemd against redis-server and memcached, same workload."""
    from tmem.experiments import bench_server as b

    result = b.run(clients=clients, pages=pages, unbatched=unbatched)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        b.render(result)


@bench.command("state")
@click.option("--pages", default=1 << 18, show_default=True,
              type=click.IntRange(min=1),
              help="Persistent pages of the client (1 GiB by default).")
@_results_json
def bench_state(pages: int, as_json: bool) -> None:
    """Save/restore throughput and the live-migration pause."""
    from tmem.experiments import bench_state as b

    result = b.run(pages=pages)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        b.render(result)


@bench.command("swap")
@click.option("--mib", default=600, show_default=True,
              type=click.IntRange(min=1),
              help="The workload's memory (MiB).")
@click.option("--limit-mib", default=200, show_default=True,
              type=click.IntRange(min=1),
              help="Its memory cgroup's limit (MiB); the rest swaps.")
@click.option("--size", default="1GiB", show_default=True,
              help="Each swap area's size.")
@click.option("--repeats", default=1, show_default=True,
              type=click.IntRange(min=1),
              help="Runs per backend; the fastest swap-in counts.")
@click.option("--backend", "backends", multiple=True,
              type=click.Choice(["tmem", "zram-lz4", "zram-lzo-rle",
                                 "disk"]),
              help="Backends to run (default: all), in order.")
@click.option("--compress", default="lz4", show_default=True,
              help="The tmem pool's codec (none, lz4, zstd).")
@_results_json
def bench_swap(mib: int, limit_mib: int, size: str, repeats: int,
               backends: tuple[str, ...], compress: str,
               as_json: bool) -> None:
    """The kernel swapping into tmem, zram (lz4, lzo-rle) and a disk file:
    swap-out/in MiB/s and host memory per swapped page (root)."""
    from tmem.experiments import bench_swap as b

    result = b.run_bench(mib=mib, limit_mib=limit_mib,
                         size=tmem.parse_size(size, "size"),
                         repeats=repeats, backends=backends or b.BACKENDS,
                         compress=compress)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        b.render(result)


@main.command("save")
@click.argument("client")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--ephemeral", is_flag=True,
              help="Also carry ephemeral pages.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@monitor_commands.connect_options
def save(client: str, file: Path, ephemeral: bool, force: bool,
         address: str | None) -> None:
    """Write CLIENT's state (settings, pools, persistent pages) to FILE.

    FILE is written by the daemon, on its host.
    """
    with _remote(address) as control:
        result = control.save(monitor_commands.client_ref(client), file,
                              ephemeral, force)
    click.echo(f"saved {result['pages']:,} pages "
               f"({format_size(result['bytes'])} of payload) to "
               f"{file.resolve()}")


@main.command("restore")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--as", "as_name", help="Name for the restored client.")
@monitor_commands.connect_options
def restore(file: Path, as_name: str | None,
            address: str | None) -> None:
    """Create clients from a state FILE (read by the daemon, on its host).

    Each waits for its program to resume it, however long that takes
    (`tmem drop` ends it); the resume token is printed.
    """
    with _remote(address) as control:
        restored = control.restore(file, as_name)
    if not restored:
        click.echo(f"{file.resolve()} holds no clients: nothing restored")
    for c in restored:
        click.echo(f"restored client {c['name']} (id {c['client_id']}) "
                   f"with {c['pages']:,} persistent pages; resume token "
                   f"{c['token']}")


@main.command("drop")
@click.argument("client")
@monitor_commands.connect_options
def drop(client: str, address: str | None) -> None:
    """End CLIENT's detached session and destroy its private pools.

    For a session nobody will resume: restored, loaded from --state or
    migrated in, such a session otherwise waits for its program forever.
    A connected client is refused.
    """
    with _remote(address) as control:
        result = control.drop(monitor_commands.client_ref(client))
    click.echo(f"dropped client {result['name']} (id {result['client_id']})"
               f" and its {result['pages']:,} persistent pages")


@main.group()
def swap() -> None:
    """The kernel swapping into a tmem persistent pool (root)."""


@swap.command("on")
@click.option("--size", required=True, help="Swap size, e.g. 4GiB.")
@click.option("--priority", type=int,
              help="swapon priority (higher is used first).")
@click.option("--mountpoint", help="Where the image is served "
              "[default: /run/tmem/swap].")
@monitor_commands.connect_options
def swap_on(size: str, priority: int | None, mountpoint: str | None,
            address: str | None) -> None:
    """Serve swap from the daemon: FUSE image, loop device, swapon."""
    with _remote(address) as control:
        result = control.swap_on(size, priority, mountpoint)
    click.echo(str(result["device"]))


@swap.command("off")
@monitor_commands.connect_options
def swap_off(address: str | None) -> None:
    """swapoff, detach the loop device, unmount (refuses if swapoff
    cannot fit in memory)."""
    with _remote(address) as control:
        result = control.swap_off()
    for step in list(result["steps"]):
        click.echo(step)


@swap.command("status")
@monitor_commands.connect_options
def swap_status(address: str | None) -> None:
    """Pages stored, compression, reads, writes, discards."""
    with _remote(address) as control:
        result = control.swap_status()
    for line in list(result["device"]):
        click.echo(line)


@main.command("migrate")
@click.argument("client")
@click.option("--to", "to", required=True,
              help="The other daemon's address, as this daemon and the "
              "client both reach it.")
@click.option("--to-token-file", type=click.Path(
    exists=True, dir_okay=False, readable=True, path_type=Path),
              help="File holding the other daemon's admin token.")
@monitor_commands.connect_options
def migrate(client: str, to: str, to_token_file: Path | None,
            address: str | None) -> None:
    """Move CLIENT, live, to another daemon; it keeps its pool ids."""
    to_token = to_token_file.read_bytes().strip() if to_token_file else None
    with _remote(address) as control:
        r = control.migrate(monitor_commands.client_ref(client), to, to_token)
    click.echo(f"migrated {r['client']} to {r['to']}: {r['pages']:,} pages "
               f"({int(str(r['bytes'])) / 2**20:,.1f} MiB) in "
               f"{float(str(r['seconds'])):.2f} s; client paused "
               f"{float(str(r['pause_ms'])):.1f} ms")


def _remote(address: str | None) -> Any:
    """The daemon's control connection (save/restore/migrate need the
    remote one: an embedded host has no files or peers of its own)."""
    control = monitor_commands.open_control(address)
    if not isinstance(control, tmem.client.RemoteControl):
        raise click.UsageError("this command needs a daemon")
    return control


# the monitor's commands live with the monitor
main.add_command(monitor_commands.top)
main.add_command(monitor_commands.list_command)
main.add_command(monitor_commands.ctl)


if __name__ == "__main__":
    main()
