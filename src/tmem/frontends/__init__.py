"""Frontends: the kernel-shaped interfaces guests use to reach tmem.

`Cleancache` keeps clean file pages in an ephemeral pool; `Frontswap`
keeps swap slots in a persistent pool.  Both take a `ClientAPI` or a
`PoolAPI`, so they run against the embedded engine or a daemon alike.
"""

from tmem.frontends.cleancache import (
    Cleancache,
    CleancacheStats,
    handle_key,
    inode_key,
)
from tmem.frontends.frontswap import Frontswap, FrontswapStats, SwapPage

__all__ = ["Cleancache", "CleancacheStats", "Frontswap", "FrontswapStats",
           "SwapPage", "handle_key", "inode_key"]
