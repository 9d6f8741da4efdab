"""The monitor's commands: `tmem top`, `tmem list` and `tmem ctl ...`.

Each is a thin wrapper: parse, get a ControlAPI, call it, print.

Rules:
- The ControlAPI comes from `connect_control(address)`, with the address
  from --connect or $TMEM_ADDRESS.  When the click context object is a
  callable, it is used instead of `connect_control` (tests pass an
  embedded host this way).
- Errors from the ControlAPI (unknown client, not admin, daemon gone)
  are TmemErrors: the `tmem` group prints them as `tmem: error: ...` and
  exits with status 2.
- A CLIENT is an id when it is all digits, else a name.  `--all` means
  every client in a snapshot taken just before; one that leaves before
  its turn is skipped.
- `flush` and `freeable` are host-wide: the ControlAPI has no per-client
  form of either.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tmem.engine.api import ClientRef, ControlAPI
from tmem.engine.errors import NoSuchClient
from tmem.engine.handles import format_size
from tmem.engine.stats import to_dict
from tmem.monitor.connect import ADDRESS_VARIABLE, connect_control
from tmem.monitor.text import render_list

MIB = 1 << 20
F = TypeVar("F", bound=Callable[..., Any])


def positive_number(ctx: click.Context, param: click.Parameter,
                    value: float | None) -> float | None:
    """A click callback: finite and above zero (a float type alone lets
    nan and inf through)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value!r} must be a finite number "
                                 "above 0", ctx, param)
    return value


def _remember_token_file(ctx: click.Context, _: click.Parameter,
                         value: Path | None) -> None:
    ctx.meta["tmem.token_file"] = value


def connect_options(command: F) -> F:
    """--connect ADDRESS and --token-file FILE, for any daemon command."""
    command = click.option(
        "--token-file", type=click.Path(path_type=Path), default=None,
        envvar="TMEM_TOKEN_FILE", show_envvar=True, expose_value=False,
        callback=_remember_token_file,
        help="File holding the admin token (for TCP).")(command)
    return click.option(
        "--connect", "address", envvar=ADDRESS_VARIABLE, default=None,
        metavar="ADDRESS", show_envvar=True,
        help="The daemon's address: a socket path, unix:PATH or "
        "tcp:HOST:PORT.")(command)


_connect_option = connect_options


def open_control(address: str | None) -> ControlAPI:
    """The ControlAPI for this command (see the module's rules)."""
    ctx = click.get_current_context()
    factory = ctx.obj
    if callable(factory):
        control: ControlAPI = factory(address)
        return control
    return connect_control(address, ctx.meta.get("tmem.token_file"))


# -- tmem top / tmem list -----------------------------------------------------


@click.command()
@click.option("-d", "--delay", "interval", default=3.0, show_default=True,
              type=float, callback=positive_number, metavar="SECONDS",
              help="Seconds between refreshes.")
@click.option("-b", "--batch", is_flag=True,
              help="Print plain-text frames instead of the live screen.")
@click.option("-n", "--iterations", type=click.IntRange(min=1),
              default=None, metavar="N",
              help="With -b: print N frames, then stop.")
@click.option("-t", "--details", is_flag=True,
              help="Start with every counter shown (the t key).")
@_connect_option
def top(interval: float, batch: bool, iterations: int | None,
        details: bool, address: str | None) -> None:
    """Watch the host live: memory, pages, and one row per client.

    Keys: t every counter, s sort by the next column, f freeze or thaw
    the selected client (admin), up/down select, q quit.

    Columns: WGT weight, CAP cap, ST state (F frozen, D session waiting),
    EPH/PERS ephemeral/persistent pages, EHIT ephemeral gets that found
    their page, PPUT persistent puts stored, PHIT persistent gets that
    found their page, REF puts refused, EVIC evictions, HIT% gets found
    over gets, PUT/s and GET/s rates.

    With -b, the exit status is 1 when the last frame found no daemon.
    """
    if iterations is not None and not batch:
        raise click.UsageError("-n/--iterations works only with -b/--batch")
    control = open_control(address)
    if batch:
        from tmem.monitor.batch import run_batch

        connected = run_batch(control.snapshot, sys.stdout,
                              interval=interval, count=iterations,
                              details=details)
        if not connected:
            sys.exit(1)
        return
    from tmem.monitor.top import run_top

    run_top(control, interval, details)


@click.command("list")
@click.option("-l", "--long", "long_form", is_flag=True,
              help="Every counter after each summary.")
@click.option("--json", "as_json", is_flag=True,
              help="The whole snapshot as one JSON object.")
@_connect_option
def list_command(long_form: bool, as_json: bool,
                 address: str | None) -> None:
    """One snapshot: the host, each client and each of its pools."""
    snap = open_control(address).snapshot()
    if as_json:
        click.echo(json.dumps(to_dict(snap), indent=2))
        return
    for line in render_list(snap, long=long_form):
        click.echo(line)


# -- tmem ctl -----------------------------------------------------------------


@click.group()
def ctl() -> None:
    """Steer clients and memory (actions need an admin connection).

    CLIENT is a client id, or a name when it is unique; --all acts on
    every client.
    """


def client_ref(text: str) -> ClientRef:
    """An all-digit CLIENT is an id; anything else is a name."""
    return int(text) if text.isdigit() else text


def _split(words: tuple[str, ...], every: bool,
           value: str | None) -> tuple[str | None, str | None]:
    """Split `[CLIENT] [VALUE]` by whether --all was given."""
    wanted = (0 if every else 1) + (0 if value is None else 1)
    if every and len(words) > wanted:
        raise click.UsageError(f"give CLIENT or --all, not both (got "
                               f"{' '.join(words)} with --all)")
    if len(words) != wanted:
        what = "--all" if every else "CLIENT"
        if value is not None:
            what += f" and {value}"
        raise click.UsageError(
            f"expected {what}, got {' '.join(words) or 'nothing'}")
    client = None if every else words[0]
    return client, (words[-1] if value is not None else None)


def _each(control: ControlAPI, client: str | None,
          apply: Callable[[ClientRef], None], done: str) -> None:
    """Apply to one client, or to every client of a fresh snapshot."""
    if client is not None:
        apply(client_ref(client))
        click.echo(f"client {client}: {done}")
        return
    clients = control.snapshot().clients
    for stats in clients:
        try:
            apply(stats.client_id)
        except NoSuchClient:
            continue  # it left after the snapshot listed it
        click.echo(f"client {stats.client_id} ({stats.name}): {done}")
    if not clients:
        click.echo("no clients")


_NEGATIVE_VALUES = {"ignore_unknown_options": True}
"""So `-5` reaches the value check instead of being taken for an option."""

_words = click.argument("words", nargs=-1, metavar="[CLIENT]")
_all = click.option("--all", "every", is_flag=True, help="Every client.")


@ctl.command()
@_words
@_all
@_connect_option
def freeze(words: tuple[str, ...], every: bool,
           address: str | None) -> None:
    """Refuse the client's puts of new pages until thawed."""
    client, _ = _split(words, every, None)
    control = open_control(address)
    _each(control, client, control.freeze, "frozen")


@ctl.command()
@_words
@_all
@_connect_option
def thaw(words: tuple[str, ...], every: bool, address: str | None) -> None:
    """Accept the client's puts again."""
    client, _ = _split(words, every, None)
    control = open_control(address)
    _each(control, client, control.thaw, "thawed")


@ctl.command(context_settings=_NEGATIVE_VALUES)
@click.argument("words", nargs=-1, metavar="[CLIENT] WEIGHT")
@_all
@_connect_option
def weight(words: tuple[str, ...], every: bool,
           address: str | None) -> None:
    """Set the client's share of ephemeral memory.

    WEIGHT is a whole number relative to the other clients' (default
    100); 0 means its pages are evicted first.
    """
    client, value = _split(words, every, "WEIGHT")
    assert value is not None
    if not value.isdigit():
        raise click.BadParameter(f"{value!r} must be a whole number >= 0",
                                 param_hint="WEIGHT")
    amount = int(value)
    control = open_control(address)
    _each(control, client, lambda ref: control.set_weight(ref, amount),
          f"weight {amount}")


@ctl.command(context_settings=_NEGATIVE_VALUES)
@click.argument("words", nargs=-1, metavar="[CLIENT] SIZE|none")
@_all
@_connect_option
def cap(words: tuple[str, ...], every: bool, address: str | None) -> None:
    """Cap the bytes the client may hold.

    SIZE is bytes or a number with a unit (256MiB, 1G); 'none' removes
    the cap.  A client above its new cap keeps its pages; its next puts
    evict its own ephemeral pages.
    """
    client, value = _split(words, every, "SIZE")
    limit = None if value == "none" else value
    control = open_control(address)
    _each(control, client, lambda ref: control.set_cap(ref, limit),
          f"cap {value}")


@ctl.command()
@click.argument("words", nargs=-1, metavar="[CLIENT] CODEC")
@_all
@_connect_option
def compress(words: tuple[str, ...], every: bool,
             address: str | None) -> None:
    """Set the codec for new pages: lz4, zstd, zstd:N or none."""
    client, value = _split(words, every, "CODEC")
    codec = str(value)
    control = open_control(address)
    _each(control, client, lambda ref: control.set_compress(ref, codec),
          f"compress {codec}")


@ctl.command("shared-auth")
@_words
@_all
@click.option("-u", "--uuid", required=True,
              help="The shared pool's UUID.")
@click.option("--revoke", is_flag=True,
              help="Withdraw the right instead of granting it.")
@_connect_option
def shared_auth(words: tuple[str, ...], every: bool, uuid: str,
                revoke: bool, address: str | None) -> None:
    """Grant (or --revoke) the right to join the shared pool UUID.

    Revoking leaves pools already joined as they are.
    """
    client, _ = _split(words, every, None)
    control = open_control(address)
    action = control.revoke if revoke else control.authorize
    done = f"{'revoked' if revoke else 'authorised'} for shared pool {uuid}"
    _each(control, client, lambda ref: action(ref, uuid), done)


@ctl.command(context_settings=_NEGATIVE_VALUES)
@click.argument("mib", type=float, callback=positive_number)
@_connect_option
def flush(mib: float, address: str | None) -> None:
    """Evict ephemeral pages until MIB MiB are freed (host-wide)."""
    freed = open_control(address).flush(int(mib * MIB))
    click.echo(f"freed {format_size(freed)} of ephemeral memory "
               f"({freed} bytes)")


@ctl.command()
@_connect_option
def freeable(address: str | None) -> None:
    """Print the bytes eviction could free now (host-wide)."""
    nbytes = open_control(address).freeable()
    click.echo(f"{format_size(nbytes)} freeable ({nbytes} bytes)")

