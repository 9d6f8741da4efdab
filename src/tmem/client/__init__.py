"""Client library for a tmem daemon: blocking (sync.py) and asyncio
(aio.py), both with the embedded engine's interface."""

from tmem.client.sync import (
    RemoteClient,
    RemoteControl,
    RemotePool,
    connect,
    connect_control,
)

__all__ = ["RemoteClient", "RemoteControl", "RemotePool", "connect",
           "connect_control"]
