"""The daemon's settings: defaults, a TOML file, command-line overrides.

Rules:
- Defaults work for a non-root user with no arguments: a Unix socket under
  $XDG_RUNTIME_DIR/tmem/ (or /tmp/tmem-UID/), mode 0600, no TCP, capacity a
  quarter of the memory available now.
- A config file may set any key below; a command-line flag wins over it.
  An unknown key or a value of the wrong type is refused, naming it.
- TCP needs a tenant token: the daemon will not listen on TCP without one.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmem.engine.codecs import codec_named
from tmem.engine.errors import InvalidArgument
from tmem.engine.handles import format_size, parse_size
from tmem.protocol.address import default_socket, parse_host_port
from tmem.swapdev.system import meminfo


def default_capacity() -> int:
    """A quarter of MemAvailable (or 256 MiB if /proc says nothing)."""
    return meminfo().get("MemAvailable", 1 << 30) // 4


@dataclass
class Config:
    """Everything `tmem serve` can be told."""

    socket: Path = field(default_factory=default_socket)
    socket_mode: int = 0o600
    tcp: str | None = None
    """HOST:PORT to listen on as well (needs token_file)."""
    capacity: int = field(default_factory=default_capacity)
    compress: str = "lz4"
    dedup: bool = False
    max_clients: int = 1024
    max_pools: int = 16
    max_connections: int = 256
    grace: float = 30.0
    """Seconds a broken connection's session waits to be resumed."""
    hello_timeout: float = 10.0
    """Seconds a new connection has to say HELLO before it is closed."""
    token_file: Path | None = None
    admin_token_file: Path | None = None
    metrics: str | None = None
    """HOST:PORT for the Prometheus /metrics endpoint."""
    state: Path | None = None
    """Where persistent pools are saved at shutdown and restored at start."""

    def tokens(self) -> tuple[bytes | None, bytes | None]:
        """(tenant token, admin token) read from their files."""
        tenant = _read_token(self.token_file)
        admin = _read_token(self.admin_token_file)
        if tenant is not None and tenant == admin:
            raise InvalidArgument(
                "token_file and admin_token_file hold the same token: "
                "every tenant would be an admin")
        return tenant, admin

    def check(self) -> None:
        """Refuse settings that cannot work together."""
        codec_named(self.compress)
        if self.tcp is not None:
            parse_host_port(self.tcp, "tcp")
            if self.token_file is None:
                raise InvalidArgument(
                    f"tcp {self.tcp!r} needs token_file: TCP clients must "
                    "present a token")
        if self.metrics is not None:
            parse_host_port(self.metrics, "metrics")
        if not 0 <= self.socket_mode <= 0o777:
            raise InvalidArgument(
                f"socket_mode {self.socket_mode:#o} is not a file mode "
                "(0o000..0o777)")
        for name, low in (("grace", 0.0), ("hello_timeout", 0.1)):
            value = getattr(self, name)
            if not low <= value <= MAX_SECONDS:
                raise InvalidArgument(
                    f"{name} {value!r} must be seconds in "
                    f"{low:g}..{MAX_SECONDS:.0f} (30 days)")
        for name in ("max_clients", "max_pools", "max_connections"):
            if getattr(self, name) < 1:
                raise InvalidArgument(
                    f"{name} {getattr(self, name)!r} must be >= 1")


MAX_SECONDS = 30 * 86400.0
"""The longest grace period or hello timeout."""
MIN_CAPACITY = 16 * 4096
"""The smallest capacity the daemon serves (16 pages)."""


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise TypeError(value)
    return Path(value)


def _mode(value: Any) -> int:
    """A quoted octal mode: TOML's 660 would be the decimal 660."""
    if not isinstance(value, str) or \
            not 1 <= len(value) <= 4 or \
            any(c not in "01234567" for c in value) or int(value, 8) > 0o777:
        raise ValueError(value)
    return int(value, 8)


def check_capacity(value: Any) -> int:
    """A capacity the daemon may lend: 16 pages up to the machine's RAM."""
    nbytes = parse_size(value, "capacity")
    if nbytes < MIN_CAPACITY:
        raise InvalidArgument(
            f"capacity {value!r} is below the minimum of {MIN_CAPACITY} "
            "bytes (16 pages)")
    total = meminfo().get("MemTotal")
    if total is not None and nbytes > total:
        raise InvalidArgument(
            f"capacity {value!r} is more than this machine's memory "
            f"({format_size(total)}): the pool lends RAM it has")
    return nbytes


_CONVERT: dict[str, Any] = {
    "socket": _path, "socket_mode": _mode, "tcp": _text,
    "capacity": check_capacity, "compress": _text, "dedup": _flag,
    "max_clients": _whole, "max_pools": _whole, "max_connections": _whole,
    "grace": _seconds, "hello_timeout": _seconds, "token_file": _path,
    "admin_token_file": _path, "metrics": _text, "state": _path,
}


_RULES = {
    "socket_mode": 'a quoted octal file mode such as "600" or "660"',
    "dedup": "true or false",
    "max_clients": "a whole number", "max_pools": "a whole number",
    "max_connections": "a whole number",
    "grace": "seconds, a number", "hello_timeout": "seconds, a number",
    "socket": "a path", "token_file": "a path",
    "admin_token_file": "a path", "state": "a path",
    "tcp": "HOST:PORT as a string", "metrics": "HOST:PORT as a string",
    "compress": "a codec name as a string",
}


def load(path: Path | None, overrides: dict[str, Any]) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (None
    values mean "not given")."""
    settings: dict[str, Any] = {}
    if path is not None:
        settings.update(_read_toml(path))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    config = Config()
    for key, value in settings.items():
        if key not in _CONVERT:
            raise InvalidArgument(
                f"config key {key!r} is unknown; known keys: "
                + ", ".join(sorted(_CONVERT)))
        try:
            setattr(config, key, _CONVERT[key](value))
        except InvalidArgument:
            raise
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"config key {key!r} has a bad value {value!r}: "
                f"{_RULES.get(key, 'see contrib/tmem.toml')}") from None
    config.check()
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as error:
        raise InvalidArgument(
            f"config file {str(path)!r} cannot be read: "
            f"{error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(
            f"config file {str(path)!r} is not TOML: {error}") from None
    section = data.get("serve", data)
    others = sorted(k for k, v in data.items()
                    if isinstance(v, dict) and k != "serve")
    if others:
        raise InvalidArgument(
            f"config file {str(path)!r} has unknown sections {others!r}; "
            "settings go at the top or under [serve]")
    if not isinstance(section, dict):
        raise InvalidArgument(f"config file {str(path)!r}: [serve] must be "
                              "a table")
    return section


def _read_token(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        token = path.read_bytes().strip()
    except OSError as error:
        raise InvalidArgument(
            f"token file {str(path)!r} cannot be read: "
            f"{error.strerror}") from None
    if not 16 <= len(token) <= 255:
        raise InvalidArgument(
            f"token in {str(path)!r} has {len(token)} bytes; use 16..255")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise InvalidArgument(
            f"token file {str(path)!r} has mode {mode:04o}: others could "
            f"read the token; chmod 600 {str(path)!r}")
    return token


def describe(config: Config) -> dict[str, Any]:
    """The settings as plain values, for the start-up line."""
    return {k: str(v) if isinstance(v, Path) else v
            for k, v in dataclasses.asdict(config).items()}
