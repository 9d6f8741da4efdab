"""Where a daemon listens: "unix:PATH", a socket path, or "tcp:HOST:PORT".

Rules:
- The default is $TMEM_ADDRESS, else the daemon's default socket: under
  $XDG_RUNTIME_DIR/tmem/, or /tmp/tmem-UID/ without one.  The daemon and
  its clients both take it from here, so they always agree.
- A bare name that is neither a path nor an existing file is refused
  rather than guessed at; TCP ports are 0..65535, IPv6 hosts in brackets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tmem.engine.errors import InvalidArgument


def default_socket() -> Path:
    """Where the daemon listens (and clients look) by default."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "tmem" / "tmem.sock"
    return Path(f"/tmp/tmem-{os.getuid()}") / "tmem.sock"


@dataclass(frozen=True)
class Address:
    transport: str
    """"unix" or "tcp"."""
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_address(text: str | None) -> Address:
    """Parse an address; None means $TMEM_ADDRESS or the default socket."""
    if text is None:
        text = os.environ.get("TMEM_ADDRESS") or str(default_socket())
    if text.startswith("unix:"):
        return Address("unix", path=text[5:])
    if text.startswith("tcp:"):
        host, port = parse_host_port(text[4:], "tcp")
        return Address("tcp", host=host, port=port)
    if "/" in text or os.path.exists(text):
        return Address("unix", path=text)
    raise InvalidArgument(
        f"address {text!r} must be a socket path, unix:PATH or "
        "tcp:HOST:PORT")


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """Split "HOST:PORT" (IPv6 hosts in brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or \
            not 0 <= int(port) < 65536:
        raise InvalidArgument(
            f"{what} address {text!r} must be HOST:PORT with a port in "
            "0..65535")
    return host.strip("[]"), int(port)
