"""Where a daemon listens: "unix:PATH", a socket path, or "tcp:HOST:PORT".

The default is $TMEM_ADDRESS, else the daemon's default socket.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tmem.engine.errors import InvalidArgument
from tmem.server.config import default_socket, parse_host_port


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
        return f"tcp:{self.host}:{self.port}"


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
