"""tmem: Transcendent Memory for Linux hosts.

Clients put, get and flush whole 4 KiB pages by handle (pool, object id,
index) in a pool of memory that one authority owns.  `Host` is the embedded
engine.
"""

from tmem.client.sync import connect, connect_control
from tmem.engine.client import Client
from tmem.engine.errors import (
    Busy,
    CheckFailed,
    ConnectionLost,
    InvalidArgument,
    LimitExceeded,
    Moved,
    NoSuchClient,
    NoSuchPool,
    PermissionDenied,
    ProtocolError,
    ServerError,
    StreamError,
    SwapError,
    TmemError,
)
from tmem.engine.handles import PAGE_SIZE, parse_size
from tmem.engine.host import Host
from tmem.engine.pool import Pool
from tmem.engine.stats import (
    ClientStats,
    HostStats,
    OpCounts,
    PageCounts,
    PoolStats,
    Snapshot,
)

__version__ = "0.1.0"

__all__ = [
    "PAGE_SIZE", "Busy", "CheckFailed", "Client", "ClientStats",
    "ConnectionLost", "Host", "HostStats", "InvalidArgument",
    "LimitExceeded", "Moved", "NoSuchClient", "NoSuchPool", "OpCounts",
    "PageCounts", "PermissionDenied", "Pool", "PoolStats", "ProtocolError",
    "ServerError", "Snapshot", "StreamError", "SwapError", "TmemError",
    "connect", "connect_control", "parse_size",
]
