"""Page codecs: the one small interface compression hides behind.

Rules:
- A codec turns one 4 KiB page into bytes and back.  Every output of a
  codec starts with that codec's `marker` byte, so a stored payload names
  its own codec: pages compressed before a client switched codecs still
  decode, with no per-page tag to store.  lz4 blocks carry their 4-byte
  little-endian size first (4096 -> 0x00 0x10 0x00 0x00); zstd frames start
  with their magic number (0x28 0xB5 0x2F 0xFD).
- A raw page is stored as itself (exactly PAGE_SIZE bytes); a compressed
  payload is always shorter, so length alone tells the two apart.
- "none" means "store raw"; it has no codec object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import lz4.block
import zstandard

from tmem.engine.errors import InvalidArgument


class Codec(Protocol):
    """Compresses one page; outputs always start with `marker`.

    `compress` and `decompress` are plain callables (often the C functions
    themselves), so the data path pays one call per page, not two.
    """

    name: str
    marker: int
    compress: Callable[[bytes], bytes]
    """Return the compressed page, starting with `marker`."""
    decompress: Callable[[bytes], bytes]
    """Return the PAGE_SIZE bytes a payload was made from."""


class Lz4Codec:
    """lz4 block format with the stored size as a self-identifying header."""

    def __init__(self) -> None:
        self.name = "lz4"
        self.marker = 0x00
        self.compress: Callable[[bytes], bytes] = lz4.block.compress
        self.decompress: Callable[[bytes], bytes] = lz4.block.decompress


class ZstdCodec:
    """zstd frames (with content size); the level trades speed for ratio."""

    def __init__(self, level: int = 1) -> None:
        self.name = "zstd" if level == 1 else f"zstd:{level}"
        self.marker = 0x28
        compress = zstandard.ZstdCompressor(level=level).compress

        def right_sized(page: bytes) -> bytes:
            # zstandard shrinks its output buffer in place, which leaves
            # the allocation page-sized: copy to keep only the payload
            return bytes(memoryview(compress(page)))

        self.compress: Callable[[bytes], bytes] = right_sized
        self.decompress: Callable[[bytes], bytes] = \
            zstandard.ZstdDecompressor().decompress


_LZ4 = Lz4Codec()
_ZSTD = ZstdCodec()
_BY_MARKER: dict[int, Codec] = {_LZ4.marker: _LZ4, _ZSTD.marker: _ZSTD}
CODEC_NAMES = ("none", "lz4", "zstd")


def codec_named(name: str) -> Codec | None:
    """Return the codec for "lz4", "zstd", "zstd:LEVEL", or None for "none"."""
    if not isinstance(name, str):
        raise InvalidArgument(
            f"compression {name!r} must be a name: none, lz4, zstd or "
            "zstd:LEVEL")
    if name == "none":
        return None
    if name == "lz4":
        return _LZ4
    if name == "zstd":
        return _ZSTD
    if name.startswith("zstd:"):
        level = name[5:]
        if level.lstrip("-").isdigit() and -7 <= int(level) <= 22:
            return ZstdCodec(int(level))
    raise InvalidArgument(
        f"compression {name!r} is unknown: use none, lz4, zstd or "
        "zstd:LEVEL (-7..22)")


DECOMPRESSORS: dict[int, Callable[[bytes], bytes]] = {
    marker: codec.decompress for marker, codec in _BY_MARKER.items()}
"""marker byte -> decompress function, for the data path."""


def codec_of(payload: bytes) -> Codec:
    """Return the codec that made a compressed payload (by its marker)."""
    try:
        return _BY_MARKER[payload[0]]
    except (KeyError, IndexError):
        raise InvalidArgument(
            f"payload starting {payload[:4]!r} names no known codec") from None
