"""The embedded engine: a host lending pages of memory to clients.

Start at `Host`; see host.py for the rules it keeps.
"""

from tmem.engine.client import Client
from tmem.engine.host import Host
from tmem.engine.pool import Pool

__all__ = ["Client", "Host", "Pool"]
