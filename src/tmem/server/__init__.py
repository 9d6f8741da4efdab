"""The daemon: sessions, identity, the asyncio driver and its config."""
